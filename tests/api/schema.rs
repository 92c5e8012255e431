#[test]
fn committed_schema_matches_the_built_schema() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .expect("schema.graphql is checked in");
    let built = deployql::graphql::sdl();
    assert!(
        committed == built,
        "schema.graphql is out of date; regenerate it with `cargo run -- schema > schema.graphql`"
    );
}
