//! Byte classes from the HTTP grammar, as 256-entry lookup tables.

/// `tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~"
///         / DIGIT / ALPHA` (RFC 9110 §5.6.2). `token = 1*tchar`; methods and field names are tokens.
pub(crate) static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        i += 1;
    }
    t
};

/// Bytes allowed in a request-target: visible ASCII, `%x21-7E` (RFC 9112 §3.2: the
/// target's grammar, RFC 3986 URI syntax, has no other bytes; anything else must be
/// percent-encoded). Space ends the target; controls, DEL and bytes above `%x7F`
/// (obs-text is not part of a URI) are refused.
pub(crate) static TARGET: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0x21;
    while i < 0x7f {
        t[i] = true;
        i += 1;
    }
    t
};

/// Bytes of a `reg-name` other than `pct-encoded` (RFC 3986 §3.2.2):
/// `unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"` and
/// `sub-delims = "!" / "$" / "&" / "'" / "(" / ")" / "*" / "+" / "," / ";" / "="`,
/// except `","`: in a field value it separates list members, so a Host value holding one
/// is several hosts, not one.
pub(crate) static REG_NAME: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b';'
                    | b'='
            );
        i += 1;
    }
    t
};

/// `qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text` (RFC 9110 §5.6.4): the bytes
/// of a quoted-string that stand for themselves (not `DQUOTE`, not the backslash of a
/// `quoted-pair`).
pub(crate) static QDTEXT: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i == 0x09 || (i >= 0x20 && i != 0x22 && i != 0x5c && i != 0x7f);
        i += 1;
    }
    t
};

/// `field-vchar = VCHAR / obs-text` plus SP and HTAB, the bytes of a field value
/// (RFC 9110 §5.5). CR, LF, NUL, other controls and DEL are not allowed.
pub(crate) static FIELD_VALUE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i == 0x09 || (i >= 0x20 && i != 0x7f);
        i += 1;
    }
    t
};

/// Whether `s` is a valid token (non-empty, all tchar).
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| TOKEN[b as usize])
}

/// Whether `s` is a valid field value (no CR, LF, NUL or other control bytes but HTAB).
pub(crate) fn is_field_value(s: &[u8]) -> bool {
    s.iter().all(|&b| FIELD_VALUE[b as usize])
}
