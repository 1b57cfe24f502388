//! The README's configuration table is generated from `config::SETTINGS`; this keeps the two from drifting.

#[test]
fn readme_lists_every_setting_exactly_as_the_code_defines_it() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let table = cmk_handler::config::settings_markdown_table();
    assert!(readme.contains(&table), "README.md must contain this table verbatim:\n\n{table}");
}
