//! The decision whether a recorded binlog origin can still start a replica.

use super::*;

fn origin(file: &str, position: u64) -> Coordinates {
    Coordinates {
        file: file.into(),
        position,
    }
}

fn log(name: &str, size: u64) -> BinaryLog {
    BinaryLog {
        name: name.into(),
        size,
    }
}

#[test]
fn an_origin_in_a_present_file_within_its_size_is_available() {
    let logs = [log("mysql-bin.000001", 1177), log("mysql-bin.000002", 385)];
    assert!(check_origin_available("mysql-0", &origin("mysql-bin.000001", 328), &logs).is_ok());
    assert!(check_origin_available("mysql-0", &origin("mysql-bin.000001", 1177), &logs).is_ok());
    assert!(check_origin_available("mysql-0", &origin("mysql-bin.000002", 4), &logs).is_ok());
}

#[test]
fn a_purged_file_needs_a_reseed_and_says_how() {
    let logs = [log("mysql-bin.000002", 385), log("mysql-bin.000003", 157)];
    let err = check_origin_available("mysql-0", &origin("mysql-bin.000001", 328), &logs).unwrap_err();
    assert_eq!(
        err.to_string(),
        "a new replica cannot start from the recorded binlog origin mysql-bin.000001:328 on mysql-0: the primary no \
         longer has mysql-bin.000001 (it has mysql-bin.000002 to mysql-bin.000003): the file was purged, or the \
         primary's data was re-initialised. The replica must be re-seeded from a consistent copy of the primary: \
         `lab repair` does that without stopping the primary's writes"
    );
    assert_eq!(
        crate::exit::Classify::exit_status(&err),
        crate::exit::ExitStatus::Unhealthy
    );
}

#[test]
fn a_reinitialised_primary_with_a_shorter_file_of_the_same_name_needs_a_reseed() {
    let err = check_origin_available(
        "mysql-0",
        &origin("mysql-bin.000001", 1044),
        &[log("mysql-bin.000001", 328)],
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("mysql-bin.000001 on the primary is only 328 bytes long, shorter than position 1044"),
        "{err}"
    );
    let err = check_origin_available("mysql-0", &origin("mysql-bin.000001", 4), &[]).unwrap_err();
    assert!(err.to_string().contains("the primary lists no binary logs"), "{err}");
}
