//! The quickstart end to end: what a newcomer sees, rows read back from SQLite before and after
//! the incremental pass.

#[path = "../examples/quickstart.rs"]
mod quickstart;

#[tokio::test]
async fn the_quickstart_shows_the_tables_before_and_after_the_incremental_pass() {
    let database = std::env::temp_dir().join(format!("d365-quickstart-{}.db", std::process::id()));
    let mut out = Vec::new();

    let succeeded = quickstart::run(&database, &mut out).await.unwrap();

    let out = String::from_utf8(out).unwrap();
    assert!(succeeded, "{out}");
    let (before, after) = out
        .split_once("Changed in Dynamics")
        .expect("the changes are announced");
    assert!(
        before.contains("Contoso Ltd | 5000000.0000 | Redmond"),
        "{before}"
    );
    assert!(
        before.contains("Fabrikam, Inc. | 922337203685477.5807 | Seattle"),
        "{before}"
    );
    assert!(!before.contains("Nestor Adams"), "{before}");
    assert!(
        after.contains("Contoso Ltd | 5250000.1234 | Bellevue"),
        "{after}"
    );
    assert!(
        after.contains("Nestor Adams | nestor@contoso.com"),
        "{after}"
    );
    assert!(
        after.contains("read 1, inserted 0, updated 0, upserted 1, deleted 0"),
        "{after}"
    );
    assert!(
        after.contains("read 2, inserted 0, updated 0, upserted 1, deleted 1"),
        "{after}"
    );
    assert!(after.contains("Person: 25 rows"), "{after}");
    std::fs::remove_file(&database).unwrap();
}
