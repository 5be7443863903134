//! DKIM signing of outgoing messages. (Being written.)
