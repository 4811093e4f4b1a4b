//! `backplane::resp`: commands encoded as arrays of bulk strings, replies decoded only when
//! complete at any cut, garbage an error rather than a wait, and values described for the log.

use pollchat::backplane::resp::{Value, command, decode, lossy};

#[test]
fn commands_are_arrays_of_bulk_strings() {
    let mut out = Vec::new();
    command(&mut out, &[b"PUBLISH", b"chan", b"a b"]);
    assert_eq!(out, b"*3\r\n$7\r\nPUBLISH\r\n$4\r\nchan\r\n$3\r\na b\r\n");
}

/// Every cut of a valid stream is "not yet", never an error or a wrong value; the whole
/// stream decodes reply by reply.
#[test]
fn replies_decode_only_when_complete_at_any_cut() {
    let stream: &[u8] =
        b"+PONG\r\n:42\r\n$-1\r\n*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$4\r\na\r\nb\r\n-ERR no\r\n";
    let expected = [
        Value::Simple(b"PONG"),
        Value::Integer(42),
        Value::Bulk(None),
        Value::Array(Some(vec![
            Value::Bulk(Some(b"message")),
            Value::Bulk(Some(b"c")),
            Value::Bulk(Some(b"a\r\nb")),
        ])),
        Value::Error(b"ERR no"),
    ];
    let mut pos = 0;
    for want in &expected {
        let (value, used) = decode(&stream[pos..]).unwrap().unwrap();
        assert_eq!(&value, want);
        for cut in 0..used {
            assert_eq!(decode(&stream[pos..pos + cut]), Ok(None), "cut at {cut}");
        }
        pos += used;
    }
    assert_eq!(pos, stream.len());
}

#[test]
fn garbage_is_an_error_not_a_wait() {
    for garbage in [
        &b"hello\r\n"[..],
        b":12x\r\n",
        b"$5\r\nabcdefg\r\n",
        b"+OK\n",
        b"$99999999999\r\n",
        b"*-7\r\n",
        b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
    ] {
        assert!(decode(garbage).is_err(), "{:?}", lossy(garbage));
    }
    // Five deep is an `XREAD` reply: streams, a stream, its entries, an entry, its fields.
    let xread = b"*1\r\n*2\r\n$1\r\nk\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\ne\r\n$1\r\nx\r\n";
    assert!(matches!(decode(xread), Ok(Some(_))));
    assert!(decode(&[b'+'; 70_000]).is_err());
}

#[test]
fn values_describe_themselves_for_the_log() {
    let (value, _) = decode(b"*3\r\n$7\r\nmessage\r\n:1\r\n$-1\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(value.describe(), "*[$\"message\", :1, nil]");
    assert_eq!(Value::Error(b"ERR x").describe(), "-ERR x");
}
