<?php
// Tencent Cloud SES, "Sample Call for PHP" (PHPMailer), copied from
// /work/shared/seeds/000_1b9c8e4406c6fd4a.txt lines 546-602 (the English
// revision: its code is whole, only the comments at the end of some lines are
// cut at the right margin as printed; the Chinese revision,
// 001_20bfcc4dbcad5d7d.txt lines 602-673, is the same code with wrapped
// comments).
//
// Reassembled from the document's text as printed: the code fence the PDF
// extraction put at a page break (lines 577-579) is dropped and the
// indentation the fragment after it lost is restored. This header comment is added after `<?php`. No token of the program
// is changed except:
//
//   $mail->Host = 'sg-smtp.qqcloudmail.com';         -> 'localhost' (the test certificate's name)
//   $mail->Username = 'abc@qq.aa.com';               -> the sender address provisioned by
//                                                       tests/seeds/run.sh
//   $mail->Password = '123456';                      -> its SMTP password
//   $mail->setFrom('abc@qq.aa.com', 'fromName');     -> the sender address
//   $mail->addAddress('test@test.com', 'toName');    -> php-to@example.net
//   $mail->Port = 465;                               -> unchanged here; tests/seeds/run.sh
//       writes the test's implicit-TLS port into this one line when it runs it
//
// The `require './PHPMailer/src/...'` lines are kept: run.sh runs the sample
// in a directory where ./PHPMailer is Debian's libphp-phpmailer
// (/usr/share/php/libphp-phpmailer), i.e. "manually import PHPMailer" as the
// guide says for projects without composer. ./tmp.txt, the attachment, is
// written there by run.sh. The sample catches the exception and exits 0
// either way; run.sh checks for 'Message has been sent' and the captured
// message. The certificate is trusted through SSL_CERT_FILE (OpenSSL's
// default CA file, which PHP's stream TLS uses when no cafile is set).

use PHPMailer\PHPMailer\PHPMailer;
use PHPMailer\PHPMailer\SMTP;
use PHPMailer\PHPMailer\Exception;
require './PHPMailer/src/Exception.php';
require './PHPMailer/src/PHPMailer.php';
require './PHPMailer/src/SMTP.php';

$mail = new PHPMailer(true);

try {
    //Server settings
    $mail->SMTPDebug = SMTP::DEBUG_SERVER; //Enable verbose de
    $mail->SMTPAuth = true; //Enable SMTP authe
    //$mail->AuthType = 'LOGIN';
    $mail->isSMTP(); //Send using SMTP
    $mail->Host = 'localhost'; //Set the SMTP s
    $mail->Username = 'noreply@ses.example.com'; //SMTP username
    $mail->Password = 'tundra-Velvet-orbit-4417'; //SMTP password

    $mail->SMTPSecure = PHPMailer::ENCRYPTION_SMTPS; //Enable implicit T
    $mail->CharSet = PHPMailer::CHARSET_UTF8;
    $mail->CharSet = 'UTF-8';
    $mail->ContentType = 'text/plain; charset=UTF-8';
    $mail->Encoding = PHPMailer::ENCODING_BASE64;
    //$mail->Encoding = '8bit';
    $mail->Port = 465; //TCP port to conne

    //Recipients
    $mail->setFrom('noreply@ses.example.com', 'fromName');
    $mail->addAddress('php-to@example.net', 'toName'); //Add a recipient
    // $mail->addAddress('ellen@example.com'); //Name is optional
    // $mail->addReplyTo('info@example.com', 'Information');
    // $mail->addCC('cc@example.com');
    // $mail->addBCC('bcc@example.com');

    //Attachments
    $mail->addAttachment('./tmp.txt'); //Add attachments
    // $mail->addAttachment('/tmp/image.jpg', 'new.jpg'); //Optional name

    //Content
    // $mail->isHTML(true); //Set email format
    $mail->Subject = 'Here is the subject';
    $mail->Body = 'This is the HTML message body <b>in bold!</b>';
    // $mail->AltBody = 'This is the body in plain text for non-HTML mail clients';

    $mail->send();
    echo 'Message has been sent';
} catch (Exception $e) {
    echo "Message could not be sent. Mailer Error: {$mail->ErrorInfo}";
}
