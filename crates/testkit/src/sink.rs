//! A sink SMTP server on loopback whose answers depend on the recipient's
//! local part, recording what it receives. (Being written.)
