//! Charset names registered with IANA (the ones mail uses, with their common
//! aliases). A name not here is refused as unregistered.

const REGISTERED: &[&str] = &[
    "us-ascii",
    "ascii",
    "ansi_x3.4-1968",
    "iso646-us",
    "utf-8",
    "utf8",
    "utf-16",
    "utf-16be",
    "utf-16le",
    "utf-32",
    "utf-32be",
    "utf-32le",
    "utf-7",
    "iso-8859-1",
    "latin1",
    "l1",
    "iso-8859-2",
    "latin2",
    "iso-8859-3",
    "iso-8859-4",
    "iso-8859-5",
    "iso-8859-6",
    "iso-8859-7",
    "iso-8859-8",
    "iso-8859-8-i",
    "iso-8859-9",
    "latin5",
    "iso-8859-10",
    "iso-8859-11",
    "iso-8859-13",
    "iso-8859-14",
    "iso-8859-15",
    "latin-9",
    "iso-8859-16",
    "windows-874",
    "windows-1250",
    "windows-1251",
    "windows-1252",
    "windows-1253",
    "windows-1254",
    "windows-1255",
    "windows-1256",
    "windows-1257",
    "windows-1258",
    "cp1250",
    "cp1251",
    "cp1252",
    "cp1253",
    "cp1254",
    "cp1255",
    "cp1256",
    "cp1257",
    "cp1258",
    "cp850",
    "cp852",
    "cp866",
    "ibm437",
    "ibm850",
    "ibm852",
    "ibm866",
    "koi8-r",
    "koi8-u",
    "gb2312",
    "gbk",
    "cp936",
    "gb18030",
    "hz-gb-2312",
    "big5",
    "big5-hkscs",
    "euc-jp",
    "iso-2022-jp",
    "iso-2022-jp-2",
    "shift_jis",
    "shift-jis",
    "sjis",
    "windows-31j",
    "cp932",
    "euc-kr",
    "iso-2022-kr",
    "ks_c_5601-1987",
    "cp949",
    "tis-620",
    "macintosh",
    "x-mac-roman",
    "viscii",
    "iso-2022-cn",
    "iso-2022-cn-ext",
    "euc-tw",
    "x-user-defined",
    "unknown-8bit", // RFC 1428
];

/// Whether `name` is a registered charset (case-insensitive): in the list
/// above, spelled with `_` for `-` (`ISO_8859-1`), or a label the WHATWG
/// encoding standard knows (which covers the IANA aliases mail clients use).
pub(crate) fn is_registered(name: &str) -> bool {
    let name = name.trim().trim_matches('"');
    let dashed = name.replace('_', "-");
    REGISTERED
        .iter()
        .any(|c| c.eq_ignore_ascii_case(name) || c.eq_ignore_ascii_case(&dashed))
        || encoding_rs::Encoding::for_label(name.as_bytes()).is_some()
}

#[cfg(test)]
mod tests {
    #[test]
    fn aliases_are_registered_and_inventions_are_not() {
        for ok in [
            "UTF-8",
            "ISO_8859-1",
            "iso-8859-1",
            "unknown-8bit",
            "GB2312",
            "csISOLatin1",
            "x-gbk",
        ] {
            assert!(super::is_registered(ok), "{ok}");
        }
        for bad in ["utf-9", "klingon", ""] {
            assert!(!super::is_registered(bad), "{bad}");
        }
    }
}
