//! A DNS server on loopback answering the MX, A, AAAA and TXT records a test
//! sets. (Being written.)
