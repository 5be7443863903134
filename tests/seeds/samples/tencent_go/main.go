// Tencent Cloud SES, "Go 调用示例" (Sample Call for Go), copied from
// /work/shared/seeds/001_20bfcc4dbcad5d7d.txt lines 439-569 (the Chinese
// revision, 2025-01-21). The English one (000_1b9c8e4406c6fd4a.txt lines
// 404-528) has the same program, but its extraction doubled the escapes
// (`message += "\\r\\n" + body`, a literal backslash-r-backslash-n, and bare
// "\n" after each header), so it is not what Tencent's users run.
//
// Reassembled from the document's text as printed: the code fences the PDF
// extraction put at page breaks, and the closing braces it added to balance
// each fragment (lines 458 and 549), are dropped; one string literal it
// wrapped ("<p>我的第一个段落。" / "</p>...", lines 474-475) is joined again;
// indentation is restored. No token of the program is changed except:
//
//	host := "smtp.qcloudmail.com"      -> "localhost" (the test certificate's name)
//	email := "abc@cd.com"              -> the sender address provisioned by tests/seeds/run.sh
//	password := "*****"                -> its SMTP password
//	toEmail := "test@test123.com"      -> go-to@example.net
//	ccEmail := "cc@test123.com"        -> go-cc@example.net
//	bccEmail := "bcc@test123.com"      -> go-bcc@example.net
//	port := 465                        -> unchanged here; tests/seeds/run.sh writes the test's
//	                                      implicit-TLS port into this one line when it runs it
//
// main() ignores Test465's error, so the program exits 0 either way; run.sh
// checks for "Send mail success!" and for the captured message. As printed,
// only toEmail is an envelope recipient: the Cc and Bcc headers are sent but
// those addresses get no copy (docs/migrate/tencent.md).
package main

import (
	"crypto/tls"
	"fmt"
	"log"
	"net"
	"net/smtp"
)

// Test465 for port 465
func Test465() error {
	host := "localhost"
	port := 465
	//控制台创建的发信地址
	email := "noreply@ses.example.com"
	//控制台设置的SMTP密码
	password := "tundra-Velvet-orbit-4417"
	toEmail := "go-to@example.net"
	ccEmail := "go-cc@example.net"
	bccEmail := "go-bcc@example.net"
	header := make(map[string]string)
	header["From"] = "test " + "<" + email + ">"
	header["To"] = toEmail
	header["Cc"] = ccEmail
	header["Bcc"] = bccEmail
	header["Subject"] = "test subject"
	//html格式邮件
	header["Content-Type"] = "text/html; charset=UTF-8"
	body := "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>hello world</title>\n</head>\n<body>\n " +
		"<h1>我的第一个标题</h1>\n    <p>我的第一个段落。</p>\n</body>\n</html>"
	//纯文本格式邮件
	//header["Content-Type"] = "text/plain; charset=UTF-8"
	//body := "test body"
	message := ""
	for k, v := range header {
		message += fmt.Sprintf("%s: %s\r\n", k, v)
	}
	message += "\r\n" + body
	auth := smtp.PlainAuth(
		"",
		email,
		password,
		host,
	)
	err := SendMailWithTLS(
		fmt.Sprintf("%s:%d", host, port),
		auth,
		email,
		[]string{toEmail},
		[]byte(message),
	)
	if err != nil {
		fmt.Println("Send email error:", err)
	} else {
		fmt.Println("Send mail success!")
	}
	return err
}

// Dial return a smtp client
func Dial(addr string) (*smtp.Client, error) {
	conn, err := tls.Dial("tcp", addr, nil)
	if err != nil {
		log.Println("tls.Dial Error:", err)
		return nil, err
	}

	host, _, _ := net.SplitHostPort(addr)
	return smtp.NewClient(conn, host)
}

// SendMailWithTLS send email with tls
func SendMailWithTLS(addr string, auth smtp.Auth, from string,
	to []string, msg []byte) (err error) {
	//create smtp client
	c, err := Dial(addr)
	if err != nil {
		log.Println("Create smtp client error:", err)
		return err
	}
	defer c.Close()
	if auth != nil {
		if ok, _ := c.Extension("AUTH"); ok {
			if err = c.Auth(auth); err != nil {
				log.Println("Error during AUTH", err)
				return err
			}
		}
	}
	if err = c.Mail(from); err != nil {
		return err
	}
	for _, addr := range to {
		if err = c.Rcpt(addr); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	_, err = w.Write(msg)
	if err != nil {
		return err
	}
	err = w.Close()
	if err != nil {
		return err
	}
	return c.Quit()
}

func main() {
	Test465()
}
