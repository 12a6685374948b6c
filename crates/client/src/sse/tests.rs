#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::*;

fn ev(event: &str, data: &str, id: Option<&str>) -> SseEvent {
    SseEvent {
        event: event.into(),
        data: data.into(),
        id: id.map(str::to_owned),
    }
}

#[test]
fn events_comments_and_multi_line_data() {
    let mut p = SseParser::new();
    let got = p
        .feed(b": keep-alive\n\nretry: 5000\nevent: presence\ndata: {\"a\":1}\n\ndata: one\ndata:two\nid: 7\n\n")
        .unwrap();
    assert_eq!(
        got,
        [
            ev("presence", "{\"a\":1}", None),
            ev("message", "one\ntwo", Some("7")),
        ]
    );
}

#[test]
fn any_split_and_any_line_ending_give_the_same_events() {
    let text = b"event: alert\r\ndata: x\r\n\r\nevent: telemetry\rdata: y\r\rdata: z\n\n";
    let whole = SseParser::new().feed(text).unwrap();
    assert_eq!(
        whole,
        [
            ev("alert", "x", None),
            ev("telemetry", "y", None),
            ev("message", "z", None),
        ]
    );
    for cut in 0..text.len() {
        let mut p = SseParser::new();
        let mut got = p.feed(&text[..cut]).unwrap();
        got.extend(p.feed(&text[cut..]).unwrap());
        assert_eq!(got, whole, "split at {cut}");
    }
}

#[test]
fn an_event_without_data_is_not_dispatched() {
    let mut p = SseParser::new();
    assert!(p.feed(b"event: presence\n\n").unwrap().is_empty());
    assert_eq!(
        p.feed(b"data: d\n\n").unwrap(),
        [ev("message", "d", None)],
        "the name does not leak into the next event"
    );
}

#[test]
fn an_endless_line_is_refused() {
    let mut p = SseParser::new();
    let chunk = vec![b'a'; 64 * 1024];
    let mut failed = false;
    for _ in 0..=(MAX_LINE / chunk.len()) {
        if p.feed(&chunk).is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed);
}

#[tokio::test]
async fn a_stream_of_chunks_yields_events_then_ends() {
    let chunks: Vec<Result<Vec<u8>, String>> = vec![
        Ok(b"event: presence\nda".to_vec()),
        Ok(b"ta: 1\n\nevent: alert\ndata: 2\n\n".to_vec()),
    ];
    let mut s = EventStream::new(futures_util::stream::iter(chunks));
    assert_eq!(s.next_event().await.unwrap().unwrap().data, "1");
    assert_eq!(s.next_event().await.unwrap().unwrap().event, "alert");
    assert!(s.next_event().await.unwrap().is_none());
}
