# SendCloud, "SMTP 方式接入使用标签功能" (labels over SMTP), the Python snippet
# "使用标签接入" (log in with a label), copied from
# /work/shared/seeds/002_bf16408e31d24752.txt lines 158-163. The page prints
# only these six lines (the PDF extraction also lost their indentation,
# restored here); the lines above and below the marked block are the least a
# program needs around them (the names the snippet uses, and a message to
# send), written for this test.
#
# Changed in the snippet, as docs/migrate/sendcloud.md tells a migrating user:
#
#   s = SMTP('%s:%d' % (HOST, PORT))  ->  s = SMTP(HOST, PORT)
#
#     Given one 'host:port' string, smtplib keeps it as the host name and
#     starttls() sends "localhost:PORT" as the TLS server name (SNI); rustls,
#     Posthorn's TLS library, refuses a name with a ':' in it
#     (Python: SSLV3_ALERT_ILLEGAL_PARAMETER). tests/seeds/run.sh also runs
#     the line as printed and checks that it still fails that way, so the
#     guide is corrected if that ever changes.
#
# Host, port and credentials are set in the scaffold: HOST = "localhost",
# PORT = 587 (tests/seeds/run.sh writes the test's STARTTLS port into that one
# line when it runs the sample), API_USER / API_KEY the API user run.sh
# provisions, label_id a label it adds. USE_SSL stays true: Posthorn offers
# AUTH only once the connection is encrypted.
import sys
from email.message import EmailMessage
from smtplib import SMTP

HOST = "localhost"
PORT = 587
DEBUG_MODE = 1
USE_SSL = True
API_USER = "sc_api_user"
API_KEY = "sc-Key-marmalade-9931-quartz"
label_id = "42"

# --- the snippet (002_bf16408e31d24752.txt lines 158-163) ---
# 使用标签接入:
s = SMTP(HOST, PORT)
s.set_debuglevel(DEBUG_MODE)
if USE_SSL:
    s.starttls()
s.login(API_USER + '#' + label_id, API_KEY)
# --- end of the snippet ---

msg = EmailMessage()
msg["From"] = "SendCloud sample <support@sendcloud.example.com>"
msg["To"] = "sc-label-one@example.net, sc-label-two@example.net"
msg["Subject"] = "SendCloud label sample"
msg.set_content("Sent with api_user#label_id.\n")
refused = s.sendmail("support@sendcloud.example.com",
                     ["sc-label-one@example.net", "sc-label-two@example.net"],
                     msg.as_string())
s.quit()
if refused:
    sys.exit("refused: %r" % (refused,))
print("sent")
