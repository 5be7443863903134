# Huawei KooMessage, "Basic SMTP Commands and Specifications", from
# /work/shared/seeds/004_7a434d22a49435a4.txt: Table 1 (lines 201-305: HELO,
# EHLO, AUTH LOGIN, AUTH PLAIN, STARTTLS "only port 587", MAIL FROM "used only
# after AUTH LOGIN ... only the email address registered on the console",
# RCPT TO "a maximum of 100 recipients", DATA, HELP, RSET, NOOP, QUIT) and
# "Extensions Supported by SMTP" (lines 307-313: AUTH LOGIN PLAIN, STARTTLS,
# SIZE).
#
# The page has no sample program, only these commands and rules, so this
# script plays them in the page's order with Python's smtplib, as a client
# written against KooMessage would, and checks every reply. Only the host,
# port and credentials are Posthorn's:
#
#   HOST = "localhost"                     (the test certificate's name)
#   PORT = 587                             (tests/seeds/run.sh writes the test's STARTTLS
#                                           port into this one line when it runs it)
#   USER, PASSWORD                         the registered sender address and its SMTP
#                                           password, provisioned by run.sh; the account has
#                                           `posthorn account set ... max_recipients 100`
#
# Exits non-zero at the first reply that is not what the page (or, where the
# page names no reply, SMTP) leads a client to expect. Prints each message's
# queue id as "queued ID".
import base64
import smtplib
import ssl
import sys
from email.message import EmailMessage

HOST = "localhost"
PORT = 587
USER = "notice@koo.example.com"
PASSWORD = "koo-Lantern-glacier-2718"
UNREGISTERED = "someone-else@koo.example.com"
RECIPIENTS = ["koo-%03d@example.net" % i for i in range(1, 102)]


def expect(what, reply, *codes):
    code, text = reply
    text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    line = "%s -> %s %s" % (what, code, text.replace("\n", " | "))
    if code not in codes:
        sys.exit("FAILED: %s (expected %s)" % (line, " or ".join(map(str, codes))))
    print(line)
    return text


def message(to, subject):
    msg = EmailMessage()
    msg["From"] = "KooMessage sample <%s>" % USER
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content("The KooMessage command flow, against Posthorn.\n")
    return msg.as_bytes()


def tls(s):
    # STARTTLS (Table 1: "Enable TLS encryption on established SMTP
    # connections. Only port 587 supports the STARTTLS command.")
    if not s.has_extn("starttls"):
        sys.exit("FAILED: EHLO on port 587 does not offer STARTTLS")
    s.starttls(context=ssl.create_default_context())
    print("STARTTLS -> TLS established: %s %s" % (s.sock.version(), s.sock.cipher()[0]))
    expect("EHLO (after TLS)", s.ehlo("client.koo.example"), 250)
    auth = s.esmtp_features.get("auth", "").upper().split()
    # "AUTH LOGIN PLAIN: The LOGIN and PLAIN authentication modes are supported."
    if "LOGIN" not in auth or "PLAIN" not in auth:
        sys.exit("FAILED: AUTH after TLS offers %r, not LOGIN and PLAIN" % (auth,))
    # "SIZE 8388608": a SIZE extension is announced (Posthorn's value is its own).
    if "size" not in s.esmtp_features:
        sys.exit("FAILED: EHLO does not announce SIZE")
    print("extensions: AUTH %s, SIZE %s" % (" ".join(auth), s.esmtp_features["size"]))


def b64(text):
    return base64.b64encode(text.encode()).decode()


# Session 1: EHLO, STARTTLS, AUTH LOGIN, HELP, NOOP, MAIL FROM, 100 x RCPT TO, DATA, RSET, QUIT.
s = smtplib.SMTP(HOST, PORT, timeout=30)
expect("EHLO", s.ehlo("client.koo.example"), 250)
tls(s)
# "MAIL FROM ... Used only after AUTH LOGIN is executed."
expect("MAIL FROM before AUTH", s.docmd("MAIL FROM:<%s>" % USER), 530)
# AUTH LOGIN: "Encode the username and password using Base64."
expect("AUTH LOGIN", s.docmd("AUTH LOGIN"), 334)
expect("  username", s.docmd(b64(USER)), 334)
expect("  password", s.docmd(b64(PASSWORD)), 235)
expect("HELP", s.docmd("HELP"), 211, 214)
expect("NOOP", s.docmd("NOOP"), 250)
# "Only the email address registered on the KooMessage console can be used."
expect("MAIL FROM (not registered)", s.docmd("MAIL FROM:<%s>" % UNREGISTERED), 550, 553)
expect("RSET", s.docmd("RSET"), 250)
expect("MAIL FROM", s.docmd("MAIL FROM:<%s>" % USER), 250)
# "If there are multiple recipients, run RCPT TO to enter the recipients
# separately. A maximum of 100 recipients are supported at the same time."
for i, rcpt in enumerate(RECIPIENTS[:100], 1):
    code, text = s.docmd("RCPT TO:<%s>" % rcpt)
    if code != 250:
        sys.exit("FAILED: RCPT TO #%d <%s> -> %s %s" % (i, rcpt, code, text.decode(errors="replace")))
print("RCPT TO x 100 -> 250 each")
expect("RCPT TO #101", s.docmd("RCPT TO:<%s>" % RECIPIENTS[100]), 452)
# "DATA ... The mail body ends with a single dot (.)."
text = expect("DATA (100 recipients)", s.data(message(RECIPIENTS[0], "KooMessage flow: 100 recipients")), 250)
print("queued %s" % text.split()[-1])
expect("RSET", s.docmd("RSET"), 250)
expect("QUIT", s.docmd("QUIT"), 221)
s.close()

# Session 2: the same with AUTH PLAIN and one recipient.
s = smtplib.SMTP(HOST, PORT, timeout=30)
expect("EHLO", s.ehlo("client.koo.example"), 250)
tls(s)
expect("AUTH PLAIN", s.docmd("AUTH PLAIN " + base64.b64encode(("\0%s\0%s" % (USER, PASSWORD)).encode()).decode()), 235)
expect("MAIL FROM", s.docmd("MAIL FROM:<%s>" % USER), 250)
expect("RCPT TO", s.docmd("RCPT TO:<koo-plain@example.net>"), 250)
text = expect("DATA", s.data(message("koo-plain@example.net", "KooMessage flow: AUTH PLAIN")), 250)
print("queued %s" % text.split()[-1])
expect("QUIT", s.docmd("QUIT"), 221)
s.close()

# Session 3: HELO ("identify itself and start an SMTP session"), NOOP, QUIT.
s = smtplib.SMTP(HOST, PORT, timeout=30)
expect("HELO", s.helo("client.koo.example"), 250)
expect("NOOP", s.docmd("NOOP"), 250)
expect("QUIT", s.docmd("QUIT"), 221)
s.close()
print("flow complete")
