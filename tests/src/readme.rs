//! The README documents every configuration key.

#[test]
fn readme_lists_every_configuration_key() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    for key in faisca_common::config::KEYS {
        // A `|` inside a table cell is written `\|`.
        let default = key.default.replace('|', "\\|");
        assert!(
            readme.contains(&format!("`{}` | `{default}`", key.name)),
            "README lacks {} (default {})",
            key.name,
            key.default
        );
    }
}
