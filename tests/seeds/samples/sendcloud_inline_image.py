# SendCloud, "SMTP邮件发送内嵌图片" (an inline image over SMTP), copied from
# /work/shared/seeds/002_bf16408e31d24752.txt lines 191-230. The PDF
# extraction lost all indentation (every line is flush left there); it is
# restored here. Nothing else is moved.
#
# Changed, as docs/migrate/sendcloud.md tells a migrating user:
#
#   self.login_username = 'postmaster@testdomain.sendcloud.org'  -> 'sc_api_user' (the API
#                                                                   user run.sh provisions)
#   self.login_password = '*****'                                -> its key
#   self.sender = 'postmaster@testdomain.sendcloud.org'          -> 'support@sendcloud.example.com',
#                                                                   a sender address of the account
#                                                                   (the comment "same as
#                                                                   login_username" no longer holds)
#   self.receiver = 'test123@qq.com'                             -> 'sc-inline@example.net'
#   self.host = 'smtp.sendcloud.net'                             -> 'localhost'
#   self.port = 25                                               -> 587 (tests/seeds/run.sh writes
#                                                                   the test's STARTTLS port into
#                                                                   this one line when it runs it)
#   def connect(self):                                           -> the two lines below instead of
#       self.smtp.connect(self.host)                                self.smtp.connect(self.host)
#
#     The sample connects with self.smtp.connect(self.host): port 25 whatever
#     self.port says, and no TLS before login. Posthorn has port 25 off and
#     offers AUTH only on an encrypted connection (smtplib: "SMTP AUTH
#     extension not supported by server"); SendCloud's own page says code
#     must add STARTTLS for encryption. The new SMTP object is needed because
#     starttls() sends the host name given to the constructor as the TLS
#     server name, and the sample's smtplib.SMTP() has none
#     ("server_hostname cannot be an empty string").
#
# ./test.png is written by run.sh in the working directory. An uncaught
# exception makes the program exit non-zero.
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.mime.image import MIMEImage
import smtplib
class MyEmail:
    def __init__(self):
        self.smtp = smtplib.SMTP()
        self.login_username = 'sc_api_user'
        self.login_password = 'sc-Key-marmalade-9931-quartz'
        self.sender = 'support@sendcloud.example.com' # same as login_username
        self.receiver = 'sc-inline@example.net'
        self.host = 'localhost'
        self.port = 587
    def connect(self):
        self.smtp = smtplib.SMTP(self.host, self.port)
        self.smtp.starttls()
    def login(self):
        self.smtp.login(self.login_username, self.login_password)
    def send(self):
        msg = MIMEMultipart('related')
        msg['From'] = self.sender
        msg['To'] = self.receiver
        email_title = 'python test inline image'
        msg['Subject'] = email_title
        content = MIMEText('test image content <img src="cid:image1" alt="xxxxx">', 'html', 'utf-8')
        msg.attach(content)
        fp = open('./test.png','rb')
        img = MIMEImage(fp.read())
        img.add_header('Content-ID','image1') #the value of content-id is the cid in html
        msg.attach(img)
        self.smtp.sendmail(self.sender, self.receiver, msg.as_string())
    def quit(self):
        self.smtp.quit()
def send():
    myemail = MyEmail()
    myemail.connect()
    myemail.login()
    myemail.send()
    myemail.quit()
if __name__ == "__main__":
    send()
