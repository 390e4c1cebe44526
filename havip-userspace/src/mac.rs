//! Raw MAC octets (as read from maps and ring-buffer events) as text.

use crate::model::MacAddr;

/// Formats a MAC as `aa:bb:cc:dd:ee:ff` ([`MacAddr`]'s `Display`).
///
/// # Examples
///
/// ```
/// assert_eq!(havip::mac::mac_string([2, 0, 0, 0, 0x0a, 1]), "02:00:00:00:0a:01");
/// ```
pub fn mac_string(mac: [u8; 6]) -> String {
    MacAddr(mac).to_string()
}
