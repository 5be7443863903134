// Tencent Cloud SES, "Java 调用示例" (Sample Call for Java), "发送附件"
// (Sending Attachment), class SampleMailAttach, copied from
// /work/shared/seeds/001_20bfcc4dbcad5d7d.txt lines 250-400 (the Chinese
// revision; the English one, 000_1b9c8e4406c6fd4a.txt lines 225-385, prints
// `"application/octet-stream;name=\"\" + filenameEncode + "\""`, which does
// not compile).
//
// Reassembled from the document's text as printed: the code fences the PDF
// extraction put at page breaks, and the closing braces it added to balance a
// fragment (lines 294-296, before the `};` that continues at line 300), are
// dropped; the lines it wrapped (the props.put(...) and setHeader(...) calls,
// the `new InternetAddress(...)` call, the HTML string, the comments) are
// joined again; indentation is restored. One misprint that stops it
// compiling is fixed as the English revision prints it:
//
//   after line 399: the closing `}` of the class is missing -> added
//
// No other token is changed except:
//
//   private static final String SMTP_HOST = "smtp.qcloudmail.com";  -> "localhost"
//   props.put("mail.user", "xxx@xxx.com");                           -> the sender address
//                                                                       provisioned by
//                                                                       tests/seeds/run.sh
//   props.put("mail.password", "XXXX");                              -> its SMTP password
//   InternetAddress from = new InternetAddress("xxx@xxx.com", "test");  -> the sender address
//   a[0] = new InternetAddress("xxx@xxx.com");      (reply-to)          -> java-reply@example.net
//   InternetAddress to = new InternetAddress("xxx@xxx.com");            -> javaatt-to@example.net
//   String filename = "/Users/aaa/bbb/a.txt";                        -> "a.txt" (run.sh writes
//   String filename1 = "/Users/aaa/bbb/b.txt";                       -> "b.txt"  both files in
//                                                                       the working directory)
//   private static final String SMTP_PORT = "465";                   -> unchanged here;
//       tests/seeds/run.sh writes the test's implicit-TLS port into this one line
//
// Keep the names ASCII: for a name that needs encoding (the Chinese names the
// comment "处理附件名称中文乱码问题" has in mind),
// MimeUtility.encodeText(filename, "UTF-8", "base64") throws "Unknown transfer
// encoding: base64" in JavaMail (its third argument takes "B" or "Q"), so the
// sample sends nothing; that is the sample's bug, not the server's.
//
// The sample prints a failure's message and exits 0 either way; run.sh checks
// that it printed nothing and that the message was captured with both
// attachments. The certificate is trusted through -Djavax.net.ssl.trustStore.
package org.example;

import javax.activation.DataHandler;
import javax.activation.FileDataSource;
import javax.mail.*;
import javax.mail.internet.*;
import java.io.UnsupportedEncodingException;
import java.nio.charset.StandardCharsets;
import java.util.Properties;
import java.util.UUID;

public class SampleMailAttach {
    private static final String SMTP_HOST = "localhost";
    private static final String SMTP_PORT = "465";

    public static void main(String[] args) {
        // 配置发送邮件的环境属性
        final Properties props = new Properties();
        // 表示SMTP发送邮件，需要进行身份验证
        props.put("mail.smtp.auth", "true");
        props.put("mail.smtp.host", SMTP_HOST);
        // 如果使用ssl，则去掉使用25端口的配置，进行如下配置，
        props.put("mail.smtp.socketFactory.class",
            "javax.net.ssl.SSLSocketFactory");
        props.put("mail.smtp.socketFactory.port", SMTP_PORT);
        props.put("mail.smtp.port", SMTP_PORT);
        // 发件人的账号，填写控制台配置的发信地址，比如xxx@xxx.com
        props.put("mail.user", "noreply@ses.example.com");
        // 访问SMTP服务时需要提供的密码（在控制台选择发信地址进行设置）
        props.put("mail.password", "tundra-Velvet-orbit-4417");
        props.setProperty("mail.smtp.socketFactory.fallback", "false");
        props.put("mail.smtp.ssl.enable", "true");
        //props.put("mail.smtp.starttls.enable", "true");
        // 构建授权信息，用于进行SMTP进行身份验证
        Authenticator authenticator = new Authenticator() {
            @Override
            protected PasswordAuthentication getPasswordAuthentication()
            {
                // 用户名、密码
                String userName = props.getProperty("mail.user");
                String password = props.getProperty("mail.password");
                return new PasswordAuthentication(userName, password);
            }
        };
        // 使用环境属性和授权信息, 创建邮件会话
        Session mailSession = Session.getInstance(props, authenticator);

        UUID uuid = UUID.randomUUID();
        final String messageIDValue = "<" + uuid.toString() + ">";
        //创建邮件消息
        MimeMessage message = new MimeMessage(mailSession) {
            @Override
            protected void updateMessageID() throws MessagingException {
                //设置自定义Message-ID值
                setHeader("Message-ID", messageIDValue);
            }
        };
        try {
            // 设置发件人邮件地址和名称。填写控制台配置的发信地址, 和mail.user保持一致。发信别名可以自定义, 如test。
            InternetAddress from = new InternetAddress("noreply@ses.example.com", "test");
            message.setFrom(from);
            //可选。设置回信地址
            Address[] a = new Address[1];
            a[0] = new InternetAddress("java-reply@example.net");
            message.setReplyTo(a);
            //设置收件人邮件地址, 比如yyy@yyy.com
            InternetAddress to = new InternetAddress("javaatt-to@example.net");
            message.setRecipient(MimeMessage.RecipientType.TO, to);
            //如果同时发给多人, 才将上面两行替换为如下 (因为部分收信系统的一些限制, 尽量每次投递给一个人; 同时我们限制单次允许发送的人数是50人):
            /*InternetAddress[] adds = new InternetAddress[2];
            adds[0] = new InternetAddress("xxx@xxx.com");
            adds[1] = new InternetAddress("xxx@xxx.com");
            message.setRecipients(Message.RecipientType.TO, adds);*/

            // 设置邮件标题
            message.setSubject("测试邮件");
            //发送附件, 总的邮件大小不超过10M, 创建消息部分
            BodyPart messageBodyPart = new MimeBodyPart();
            //消息 text/plain (纯文本) text/html (HTML 文档)
            messageBodyPart.setText("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>hello world</title>\n</head>\n<body>\n " +
                "<h1>我的第一个标题</h1>\n                <p>我的第一个段落。</p>\n</body>\n</html>");
            messageBodyPart.setHeader("Content-Type",
                "text/plain;charset=utf-8");
            //创建多重消息
            Multipart multipart = new MimeMultipart();
            //设置文本消息部分
            multipart.addBodyPart(messageBodyPart);
            //附件部分
            messageBodyPart = new MimeBodyPart();
            //设置要发送附件的文件路径
            String filename = "a.txt";
            FileDataSource source = new FileDataSource(filename);
            messageBodyPart.setDataHandler(new DataHandler(source));
            //处理附件名称中文（附带文件路径）乱码问题
            String filenameEncode = MimeUtility.encodeText(filename,
                "UTF-8", "base64");
            messageBodyPart.setFileName(filenameEncode);
            messageBodyPart.setHeader("Content-Transfer-Encoding",
                "base64");
            messageBodyPart.setHeader("Content-Disposition",
                "attachment");
            messageBodyPart.setHeader("Content-Type",
                "application/octet-stream;name=\"" + filenameEncode + "\"");
            multipart.addBodyPart(messageBodyPart);

            //附件部分,多个附件,分为多个part
            BodyPart messageBodyPart1 = new MimeBodyPart();
            //设置要发送附件的文件路径
            String filename1 = "b.txt";
            FileDataSource source1 = new FileDataSource(filename1);
            messageBodyPart1.setDataHandler(new DataHandler(source1));
            //处理附件名称中文（附带文件路径）乱码问题
            String filenameEncode1 = MimeUtility.encodeText(filename1,
                "UTF-8", "base64");
            messageBodyPart1.setHeader("Content-Transfer-Encoding",
                "base64");
            messageBodyPart1.setHeader("Content-Disposition",
                "attachment");
            messageBodyPart1.setHeader("Content-Type",
                "application/octet-stream;name=\"" + filenameEncode1 + "\"");
            multipart.addBodyPart(messageBodyPart1);

            //发送含有附件的完整消息
            message.setContent(multipart);
            //发送附件代码，结束
            //发送邮件
            Transport.send(message);
        } catch (MessagingException | UnsupportedEncodingException e) {
            String err = e.getMessage();
            err = new String(err.getBytes(StandardCharsets.ISO_8859_1),
                StandardCharsets.UTF_8);
            System.out.println(err);
        }
    }
}
