//! Tests of reading the recovery record: well-formed files, and every kind of malformed
//! input reported with its file, line and field.

use super::*;

fn contig(text: &str) -> Result<(usize, Samples), PlotError> {
    parse_contig(Path::new("r/recovery/contig.csv"), text)
}

fn kills(text: &str) -> Result<Vec<(u64, String)>, PlotError> {
    parse_kills(Path::new("r/recovery/kills.csv"), text)
}

/// The (line, field) of a malformed-input error, and that its message names the file.
fn where_(r: Result<impl std::fmt::Debug, PlotError>) -> (usize, String) {
    match r {
        Err(e @ PlotError::Malformed { .. }) => {
            let msg = e.to_string();
            let PlotError::Malformed {
                file, line, field, ..
            } = e
            else {
                unreachable!()
            };
            assert!(msg.starts_with(&format!("{}:{line}: field `{field}`", file.display())));
            (line, field)
        }
        other => panic!("expected a malformed-input error, got {other:?}"),
    }
}

#[test]
fn parses_contig_with_blank_lines_crlf_and_missing_rows() {
    let text = "t_ms,s0,s1\r\n0,0,0\r\n10,5,7\r\n\r\n35,5,9\n";
    let (spaces, samples) = contig(text).unwrap();
    assert_eq!(spaces, 2);
    assert_eq!(
        samples,
        vec![(0, vec![0, 0]), (10, vec![5, 7]), (35, vec![5, 9])]
    );
}

#[test]
fn parses_kills_and_header_only() {
    assert_eq!(kills("t_ms,what\n").unwrap(), vec![]);
    assert_eq!(
        kills("t_ms,what\n5000,leader\n10000, sequencer \n12000,proxy g1,r2\n").unwrap(),
        vec![
            (5000, "leader".to_string()),
            (10000, "sequencer".to_string()),
            (12000, "proxy g1,r2".to_string()),
        ]
    );
}

#[test]
fn contig_header_errors() {
    assert_eq!(where_(contig("")), (1, "header".to_string()));
    assert_eq!(where_(contig("time,s0\n0,0\n")), (1, "t_ms".to_string()));
    assert_eq!(where_(contig("t_ms\n0\n")), (1, "s0".to_string()));
    assert_eq!(where_(contig("\nt_ms,s0,s2\n")), (2, "s1".to_string()));
}

#[test]
fn contig_row_errors_name_line_and_field() {
    let head = "t_ms,s0,s1\n0,0,0\n";
    assert_eq!(
        where_(contig(&format!("{head}10,4,x\n"))),
        (3, "s1".to_string())
    );
    assert_eq!(
        where_(contig(&format!("{head}10,-4,1\n"))),
        (3, "s0".to_string())
    );
    assert_eq!(
        where_(contig(&format!("{head}ten,4,1\n"))),
        (3, "t_ms".to_string())
    );
    assert_eq!(where_(contig(&format!("{head},\n"))), (3, "s1".to_string()));
    assert_eq!(
        where_(contig(&format!("{head}10,4\n"))),
        (3, "s1".to_string())
    );
    assert_eq!(
        where_(contig(&format!("{head}10,4,1,1\n"))),
        (3, "column 4".to_string())
    );
    assert_eq!(
        where_(contig(&format!("{head}20,4,1\n10,5,1\n"))),
        (4, "t_ms".to_string())
    );
    assert_eq!(
        where_(contig(&format!("{head}20,4,1\n30,5,0\n"))),
        (4, "s1".to_string())
    );
}

#[test]
fn contig_error_message_is_readable() {
    let err = contig("t_ms,s0\n0,0\n10,1x\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "r/recovery/contig.csv:3: field `s0`: `1x` is not a non-negative integer"
    );
}

#[test]
fn kills_errors_name_line_and_field() {
    assert_eq!(where_(kills("")), (1, "header".to_string()));
    assert_eq!(where_(kills("t_ms,who\n")), (1, "what".to_string()));
    assert_eq!(
        where_(kills("t_ms,what,extra\n")),
        (1, "column 3".to_string())
    );
    assert_eq!(where_(kills("t_ms,what\n5000\n")), (2, "what".to_string()));
    assert_eq!(where_(kills("t_ms,what\n5000,\n")), (2, "what".to_string()));
    assert_eq!(
        where_(kills("t_ms,what\n5e3,leader\n")),
        (2, "t_ms".to_string())
    );
}

#[test]
fn read_record_reads_both_files_and_names_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join(RECOVERY_DIR);
    std::fs::create_dir(&rec).unwrap();
    std::fs::write(rec.join(CONTIG_FILE), "t_ms,s0\n0,0\n10,3\n").unwrap();
    let err = read_record(dir.path()).unwrap_err();
    assert!(matches!(&err, PlotError::Io { path, .. } if path == &rec.join(KILLS_FILE)));
    assert!(err.to_string().contains("kills.csv"));

    std::fs::write(rec.join(KILLS_FILE), "t_ms,what\n5,leader\n").unwrap();
    let record = read_record(dir.path()).unwrap();
    assert_eq!(
        record,
        Record {
            spaces: 1,
            samples: vec![(0, vec![0]), (10, vec![3])],
            kills: vec![(5, "leader".to_string())],
        }
    );

    std::fs::write(rec.join(KILLS_FILE), "t_ms,what\n5,leader\nfive,proxy\n").unwrap();
    let err = read_record(dir.path()).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("kills.csv:3: field `t_ms`: `five` is not a non-negative integer"),
        "{err}"
    );
}
