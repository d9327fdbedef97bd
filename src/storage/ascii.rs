//! JSON sent to a store, ASCII only.

use std::fmt::Write as _;

use serde_json::value::RawValue;
use serde_json::Value;

/// `value` as JSON with every non-ASCII character written as `\uXXXX` escapes.
/// Azurite decodes a request body chunk by chunk and garbles a multi-byte character
/// that straddles two chunks (measured: `é` × 32,767 reads back altered, and a value
/// can grow past its size limit); an ASCII body has no character to split. Non-ASCII
/// text only occurs inside JSON strings, where the escapes mean the same. Cosmos DB
/// takes the same body, and a partition key header can only be ASCII.
pub fn ascii_json(value: &Value) -> Box<RawValue> {
    let json = value.to_string();
    let mut ascii = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            ascii.push(c);
        } else {
            for unit in c.encode_utf16(&mut [0; 2]) {
                write!(ascii, "\\u{unit:04x}").expect("writing to a String cannot fail");
            }
        }
    }
    RawValue::from_string(ascii).expect("escaping non-ASCII characters keeps JSON valid")
}
