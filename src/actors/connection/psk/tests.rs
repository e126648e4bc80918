use super::*;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Pins the parameters and the salt: every router of a mesh must derive these same bytes, so a
/// change here is a change of protocol, never a refactoring. The expected key is the reference
/// implementation's (phc-winner-argon2's CLI: `echo -n 'correct horse battery staple' |
/// argon2 weft-mesh/v1 -id -t 3 -k 65536 -p 1 -l 32 -r`).
#[test]
fn the_derivation_is_pinned() {
    let key = MeshKey::derive(b"correct horse battery staple").unwrap();
    assert_eq!(hex(key.bytes()), PINNED);
    let other = MeshKey::derive(b"correct horse battery stapler").unwrap();
    assert_ne!(other.bytes(), key.bytes());
    assert_eq!(format!("{key:?}"), "MeshKey(<redacted>)");
}

const PINNED: &str = "3244a721cd21ed433dd2fccc1e962994f66565328d63de164ff513f8ca5dc779";

#[test]
fn short_or_plain_passwords_are_counted_weak() {
    assert!(estimated_bits(b"") < WEAK_PASSWORD_BITS);
    assert!(estimated_bits(b"hunter2") < WEAK_PASSWORD_BITS);
    assert!(estimated_bits(b"12345678901234") < WEAK_PASSWORD_BITS);
    assert!(estimated_bits(b"Tr0ub4dor&3x!") >= WEAK_PASSWORD_BITS);
    assert!(estimated_bits(b"correct horse battery staple") >= WEAK_PASSWORD_BITS);
}
