//! Routing: which hosts take mail for a domain. (Being written.)
