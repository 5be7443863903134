// Tencent Cloud SES, "发送带附件的邮件" (Sending Email with Attachment), the Go
// sample, copied from /work/shared/seeds/001_20bfcc4dbcad5d7d.txt lines
// 965-1143 (the Chinese revision). The English one (000_1b9c8e4406c6fd4a.txt
// lines 828-1008) is the same program with its escapes doubled by the
// extraction ("\\r\\n", and "\n\n" after each header), which would send a
// message whose headers are separated by blank lines.
//
// Reassembled from the document's text as printed: the code fences the PDF
// extraction put at page breaks, and the closing brace it added to balance a
// fragment (line 1104), are dropped; the lines it wrapped (the
// `attachment += ... + ";name=\"" + ...` expressions and a comment, lines
// 1019-1021, 1024-1025, 1029-1031) are joined again; indentation is restored.
// No token of the program is changed except:
//
//	host := "smtp.qqcloudmail.com"     -> "localhost" (the test certificate's name)
//	email := "abc@cd.com"              -> the sender address provisioned by tests/seeds/run.sh
//	password := "****"                 -> its SMTP password
//	toEmail := "test@test123.com"      -> goatt-to@example.net
//	port := 465                        -> unchanged here; tests/seeds/run.sh writes the test's
//	                                      implicit-TLS port into this one line when it runs it
//
// The two attachments are the files the sample names, read from the working
// directory: ./go.mod (this directory's own) and ./bbbb.txt (run.sh writes
// it). main() ignores the error, so
// the program exits 0 either way; run.sh checks for "Send mail success!" and
// for the captured message.
//
// As printed, the sample writes the text part's header as
// "Content-Type:Content-Type: text/html; charset=UTF-8" (contentType already
// holds "Content-Type: ..."), and its Date header is Go's time.Now().String()
// ("2025-01-02 15:04:05.999999999 +0800 CST m=+0.000123"), not an RFC 5322
// date. Both are left as printed (Posthorn passes them on as sent);
// docs/migrate/tencent.md tells users to fix them.
package main

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io/ioutil"
	"log"
	"mime"
	"net"
	"net/smtp"
	"time"
)

// Test465Attachment for port 465
func Test465Attachment() error {
	boundary := "GoBoundary"
	host := "localhost"
	port := 465
	email := "noreply@ses.example.com"
	password := "tundra-Velvet-orbit-4417"
	toEmail := "goatt-to@example.net"
	header := make(map[string]string)
	header["From"] = "test " + "<" + email + ">"
	header["To"] = toEmail
	header["Subject"] = "Test465Attachment"
	header["Content-Type"] = "multipart/mixed;boundary=" + boundary
	//该字段暂时没有用到，默认传1.0
	header["Mime-Version"] = "1.0"
	//该字段暂时没有用到
	header["Date"] = time.Now().String()
	bodyHtml := "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>hello world</title>\n</head>\n<body>\n " +
		"<h1>我的第一个标题</h1>\n    <p>我的第一个段落。</p>\n</body>\n</html>"
	message := ""
	for k, v := range header {
		message += fmt.Sprintf("%s: %s\r\n", k, v)
	}
	buffer := bytes.NewBuffer(nil)
	buffer.WriteString(message)
	contentType := "Content-Type: text/html" + "; charset=UTF-8"
	body := "\r\n--" + boundary + "\r\n"
	body += "Content-Type:" + contentType + "\r\n"
	body += "\r\n" + bodyHtml + "\r\n"
	buffer.WriteString(body)

	attachment := "\r\n--" + boundary + "\r\n"
	attachment += "Content-Transfer-Encoding:base64\r\n"
	attachment += "Content-Disposition:attachment\r\n"
	attachment += "Content-Type:" + "application/octet-stream" + ";name=\"" + mime.BEncoding.Encode("UTF-8",
		"./go.mod") + "\"\r\n"
	buffer.WriteString(attachment)
	writeFile(buffer, "./go.mod")
	//多个附件往后拼接,最多不能超过10个附件,单个附件不能超过5M,所有附件累计不能超过8-9M,消息体过大会返回EOF
	attachment1 := "\r\n--" + boundary + "\r\n"
	attachment1 += "Content-Transfer-Encoding:base64\r\n"
	attachment1 += "Content-Disposition:attachment\r\n"
	attachment1 += "Content-Type:" + "application/octet-stream" + ";name=\"" + mime.BEncoding.Encode("UTF-8",
		"./bbbb.txt") + "\"\r\n"
	buffer.WriteString(attachment1)
	writeFile(buffer, "./bbbb.txt")
	defer func() {
		if err := recover(); err != nil {
			log.Fatalln(err)
		}
	}()

	buffer.WriteString("\r\n--" + boundary + "--")
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
		buffer.Bytes(),
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

// writeFile read file to buffer
func writeFile(buffer *bytes.Buffer, fileName string) {
	file, err := ioutil.ReadFile(fileName)
	if err != nil {
		panic(err.Error())
	}
	payload := make([]byte, base64.StdEncoding.EncodedLen(len(file)))
	base64.StdEncoding.Encode(payload, file)
	buffer.WriteString("\r\n")
	for index, line := 0, len(payload); index < line; index++ {
		buffer.WriteByte(payload[index])
		if (index+1)%76 == 0 {
			buffer.WriteString("\r\n")
		}
	}
}

func main() {
	Test465Attachment()
}
