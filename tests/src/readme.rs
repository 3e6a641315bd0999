//! The README documents every configuration key.

#[test]
fn readme_lists_every_configuration_key() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    for key in faisca_common::config::KEYS {
        assert!(
            readme.contains(&format!("`{}` | `{}`", key.name, key.default)),
            "README lacks {} (default {})",
            key.name,
            key.default
        );
    }
}
