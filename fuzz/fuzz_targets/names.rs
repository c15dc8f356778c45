//! Name derivation. Invariants: every derived name is a valid object name
//! (at most 63 characters of [a-z0-9-], starting and ending alphanumeric) and
//! the same inputs always give the same name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msp_operator::domain::names::{deleter_role_name, role_binding_name, snapshot_name};

fn valid(name: &str) -> bool {
    name.len() <= 63
        && !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A Delegation name as the CRD admits it: a DNS subdomain of at most 63.
fn delegation_name(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
        .take(63)
        .collect();
    let trimmed = cleaned.trim_matches('-');
    if trimmed.is_empty() {
        "d".into()
    } else {
        trimmed.into()
    }
}

fuzz_target!(|input: (String, String, String, u8, u8, u8, i64)| {
    let (raw, principal, role, major, minor, patch, generation) = input;
    let delegation = delegation_name(&raw);
    let version = format!("{major}.{minor}.{patch}");
    for name in [
        role_binding_name("ns", &delegation, &principal, "ClusterRole", &role),
        deleter_role_name(&delegation),
        snapshot_name(
            &delegation,
            "uid",
            "p",
            "o",
            "plan",
            &version,
            Some(generation),
        ),
        snapshot_name(&delegation, "uid", "p", "o", "plan", &version, None),
    ] {
        assert!(valid(&name), "{name:?} from {delegation:?}");
    }
    assert_eq!(
        role_binding_name("ns", &delegation, &principal, "ClusterRole", &role),
        role_binding_name("ns", &delegation, &principal, "ClusterRole", &role)
    );
});
