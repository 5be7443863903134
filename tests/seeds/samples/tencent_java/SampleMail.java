// Tencent Cloud SES, "Java 调用示例" (Sample Call for Java), class SampleMail,
// copied from /work/shared/seeds/001_20bfcc4dbcad5d7d.txt lines 135-246 (the
// Chinese revision, 2025-01-21; the English one is 000_1b9c8e4406c6fd4a.txt
// lines 111-221).
//
// Reassembled from the document's text as printed: the code fences the PDF
// extraction put at page breaks are dropped, the lines it wrapped are joined
// again (the props.put(...) calls, the `getPasswordAuthentication()`
// signature, the comments, the HTML string, the catch clause), and the
// indentation it lost is restored. Two misprints that stop it compiling are
// fixed as the English revision prints them:
//
//   line 168  >false");   ->  "false");   (a '>' where the English revision has the quote)
//   line 190  @Override   ->  //@Override (the method it annotated is commented out;
//                                         an annotation before `};` does not compile)
//
// No other token is changed except:
//
//   private static final String SMTP_HOST = "smtp.qcloudmail.com";  -> "localhost"
//   props.put("mail.user", "xxx@xxx.com");                           -> the sender address
//                                                                       provisioned by
//                                                                       tests/seeds/run.sh
//   props.put("mail.password", "XXXX");                              -> its SMTP password
//   InternetAddress from = new InternetAddress("xxx@xxx.com", "test");  -> the sender address
//   InternetAddress to = new InternetAddress("xxx@xxx.com");            -> java-to@example.net
//   private static final String SMTP_PORT = "465";                   -> unchanged here;
//       tests/seeds/run.sh writes the test's implicit-TLS port into this one line
//
// The sample prints a failure's message and exits 0 either way; run.sh checks
// that it printed nothing and that the message was captured. The server's
// certificate is trusted through -Djavax.net.ssl.trustStore (run.sh), not in
// the code.
package org.example;

import javax.mail.*;
import javax.mail.internet.InternetAddress;
import javax.mail.internet.MimeMessage;
import java.io.UnsupportedEncodingException;
import java.nio.charset.StandardCharsets;
import java.util.Properties;

public class SampleMail {
    private static final String SMTP_HOST = "localhost";
    private static final String SMTP_PORT = "465";

    public static void main(String[] args) {
        // 配置发送邮件的环境属性
        final Properties props = new Properties();
        // 表示SMTP发送邮件，需要进行身份验证
        props.put("mail.smtp.auth", "true");
        props.put("mail.smtp.host", SMTP_HOST);
        // 如果使用ssl, 则去掉使用25端口的配置, 进行如下配置,
        props.put("mail.smtp.socketFactory.class", "javax.net.ssl.SSLSocketFactory");
        props.put("mail.smtp.socketFactory.port", SMTP_PORT);
        props.put("mail.smtp.port", SMTP_PORT);
        // 发件人的账号, 填写控制台配置的发信地址, 比如xxx@xxx.com
        props.put("mail.user", "noreply@ses.example.com");
        // 访问SMTP服务时需要提供的密码 (在控制台选择发信地址进行设置)
        props.put("mail.password", "tundra-Velvet-orbit-4417");
        props.setProperty("mail.smtp.socketFactory.fallback", "false");
        props.put("mail.smtp.ssl.enable", "true");
        //props.put("mail.smtp.starttls.enable", "true");
        // 构建授权信息, 用于进行SMTP进行身份验证
        Authenticator authenticator = new Authenticator() {
            @Override
            protected PasswordAuthentication getPasswordAuthentication() {
                // 用户名、密码
                String userName = props.getProperty("mail.user");
                String password = props.getProperty("mail.password");
                return new PasswordAuthentication(userName, password);
            }
        };
        // 使用环境属性和授权信息, 创建邮件会话
        Session mailSession = Session.getInstance(props, authenticator);
        // mailSession.setDebug(true);
        //UUID uuid = UUID.randomUUID();
        //final String messageIdValue = "<" + uuid.toString() + ">";
        // 创建邮件消息
        MimeMessage message = new MimeMessage(mailSession) {
            //@Override
            //protected void updateMessageID() throws MessagingException {
                //设置自定义Message-ID值
                //setHeader("Message-ID", messageIdValue);
                //}
            };
        try {
            // 设置发件人邮件地址和名称。填写控制台配置的发信地址,比如xxx@xxx.com。和上面的mail.user保持一致。名称用户可以自定义填写。
            InternetAddress from = new InternetAddress("noreply@ses.example.com", "test");

            message.setFrom(from);
            //可选。设置回信地址
            //
            //      Address[] a = new Address[1];
            //      a[0] = new InternetAddress("***");
            //      message.setReplyTo(a);
            // 设置收件人邮件地址,比如yyy@yyy.com
            InternetAddress to = new InternetAddress("java-to@example.net");
            message.setRecipient(MimeMessage.RecipientType.TO, to);
            //如果同时发给多人,才将上面两行替换为如下(因为部分收信系统的一些限制,尽量每次投递给一个人;同时我们限制单次允许发送的人数是50人):
            //InternetAddress[] adds = new InternetAddress[2];
            //adds[0] = new InternetAddress("xxx@xxx.com");
            //adds[1] = new InternetAddress("xxx@xxx.com");
            //message.setRecipients(Message.RecipientType.TO, adds);

            // 设置邮件标题
            message.setSubject("测试邮件");
            message.setHeader("Content-Transfer-Encoding", "base64");
            // 设置邮件的内容体 type: text/plain (纯文本) text/html (HTML文档)

            message.setContent("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>hello world</title>\n</head>\n<body>\n " +
                    "<h1>我的第一个标题</h1>\n      <p>我的第一个段落。</p>\n</body>\n</html>", "text/html; charset=UTF-8");
            //发送邮件
            Transport.send(message);
        } catch (MessagingException | UnsupportedEncodingException e) {
            String err = e.getMessage();
            err = new String(err.getBytes(StandardCharsets.ISO_8859_1), StandardCharsets.UTF_8);
            System.out.println(err);
        }
    }
}
