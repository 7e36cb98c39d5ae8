//! The codec round-trips arbitrary entries, rejects every defect as a corrupt entry and
//! keeps credentials out of the bytes.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cache_core::codec::{self, FIXED_HEADER_LEN};
use cache_core::testkit::fixtures::{
    assert_equivalent_policy, assert_same_response, policy, policy_for_request, request_for,
    response,
};
use cache_core::{CacheEntry, CachedResponse, EntryMetadata, ErrorKind};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Version};
use proptest::prelude::*;
use url::Url;

fn entry_of(response: CachedResponse, tags: Vec<String>) -> CacheEntry {
    let policy = policy(&response);
    let metadata = EntryMetadata::new(SystemTime::now(), Duration::from_secs(90), tags);
    CacheEntry::new(response, policy, metadata)
}

fn header_name() -> impl Strategy<Value = HeaderName> {
    prop_oneof![
        Just(HeaderName::from_static("set-cookie")),
        Just(HeaderName::from_static("x-multi")),
        Just(HeaderName::from_static("content-type")),
        "[a-z][a-z0-9-]{0,20}".prop_map(|name| HeaderName::from_bytes(name.as_bytes()).unwrap()),
    ]
}

fn header_value() -> impl Strategy<Value = HeaderValue> {
    // Visible ASCII, spaces, tabs and every byte from 0x80: UTF-8 or not.
    proptest::collection::vec(prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff], 0..40)
        .prop_map(|bytes| HeaderValue::from_bytes(&bytes).unwrap())
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        proptest::collection::vec(any::<u8>(), 0..2048),
        (1usize..3).prop_map(|mib| vec![0xab; mib * 1024 * 1024]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn arbitrary_entries_round_trip(
        headers in proptest::collection::vec((header_name(), header_value()), 0..24),
        body in body(),
        tags in proptest::collection::vec("\\PC{0,12}", 0..4),
        status in 100u16..600,
        version in prop_oneof![Just(Version::HTTP_10), Just(Version::HTTP_11), Just(Version::HTTP_2), Just(Version::HTTP_3)],
        key in "\\PC{0,64}",
    ) {
        let mut header_map = HeaderMap::new();
        for (name, value) in headers {
            header_map.append(name, value);
        }
        let response = CachedResponse::new(Url::parse("https://example.com/p?q=1").unwrap(), StatusCode::from_u16(status).unwrap())
            .with_version(version)
            .with_headers(header_map)
            .with_body(body);
        let entry = entry_of(response.clone(), tags.clone());
        let encoded = Bytes::from(codec::encode(&key, &entry).unwrap());
        let decoded = codec::decode(encoded.clone()).unwrap();
        prop_assert_eq!(&decoded.key, &key);
        assert_same_response(&decoded.entry.response, &response, "round trip");
        assert_equivalent_policy(decoded.entry.policy(), entry.policy(), &request_for(&response.url), "round trip");
        prop_assert_eq!(&decoded.entry.metadata, &entry.metadata);
        // The body is a slice of the encoded buffer, not a copy.
        if !response.body.is_empty() {
            let encoded_range = encoded.as_ptr() as usize..encoded.as_ptr() as usize + encoded.len();
            prop_assert!(encoded_range.contains(&(decoded.entry.response.body.as_ptr() as usize)));
        }
    }
}

#[test]
fn the_layout_is_as_documented() {
    let entry = entry_of(
        response("https://example.com/a", Bytes::from_static(b"hello")),
        vec![],
    );
    let encoded = codec::encode("k", &entry).unwrap();
    assert_eq!(&encoded[..4], b"HCSE");
    assert_eq!(encoded[4], codec::FORMAT_VERSION);
    assert_eq!(encoded[5], 0, "flags of an envelope with its body");
    let metadata_len = u32::from_le_bytes(encoded[16..20].try_into().unwrap()) as usize;
    let body_len = u64::from_le_bytes(encoded[20..28].try_into().unwrap());
    assert_eq!(body_len, 5);
    assert_eq!(encoded.len(), FIXED_HEADER_LEN + metadata_len + 5);
    assert_eq!(&encoded[encoded.len() - 5..], b"hello");
}

#[test]
fn a_prefixed_encoding_is_the_prefix_then_the_same_envelope() {
    let entry = entry_of(
        response(
            "https://example.com/p",
            Bytes::from_static(b"prefixed body"),
        ),
        vec!["t".to_owned()],
    );
    let plain = codec::encode("k", &entry).unwrap();
    let prefixed = codec::encode_parts_with_prefix(
        b"12345678",
        "k",
        &entry.response,
        entry.policy(),
        &entry.metadata,
    )
    .unwrap();
    assert_eq!(&prefixed[..8], b"12345678");
    assert_eq!(&prefixed[8..], &plain[..]);
    let decoded = codec::decode_for_key(Bytes::from(prefixed).slice(8..), "k").unwrap();
    assert_same_response(&decoded.response, &entry.response, "prefixed");
}

#[test]
fn the_expiry_can_be_read_without_decoding() {
    let entry = entry_of(
        response("https://example.com/a", Bytes::from_static(b"body")),
        vec![],
    );
    let encoded = codec::encode("some key", &entry).unwrap();
    let expires_at = codec::peek_expires_at(&encoded).unwrap();
    let nanos = |time: SystemTime| {
        time.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    };
    assert_eq!(nanos(expires_at), nanos(entry.metadata.expires_at));
    assert_eq!(codec::peek_expires_at(&encoded[..40]), None);
    assert_eq!(codec::peek_expires_at(b"nonsense"), None);
}

#[test]
fn head_only_envelopes_round_trip_and_are_not_full_envelopes() {
    let entry = entry_of(
        response("https://example.com/big", Bytes::new()),
        vec!["t".into()],
    );
    let (head, _) = entry.response.clone().into_head_and_body();
    let encoded = Bytes::from(
        codec::encode_head("big", &head, entry.policy(), &entry.metadata, 1 << 40).unwrap(),
    );
    let decoded = codec::decode_head(encoded.clone()).unwrap();
    assert_eq!(decoded.body_len, 1 << 40);
    assert_eq!(decoded.key, "big");
    assert_eq!(decoded.metadata, entry.metadata);
    assert_eq!(decoded.head.headers, head.headers);
    assert_eq!(
        codec::decode(encoded).unwrap_err().kind(),
        ErrorKind::CorruptEntry
    );
}

#[test]
fn another_format_version_another_key_and_a_bad_checksum_are_corrupt() {
    let entry = entry_of(
        response("https://example.com/a", Bytes::from_static(b"body")),
        vec![],
    );
    let encoded = codec::encode("key-a", &entry).unwrap();
    let error = codec::decode_for_key(Bytes::from(encoded.clone()), "key-b").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::CorruptEntry);
    assert_eq!(error.message(), "the entry was stored for another key");

    let mut older = encoded.clone();
    older[4] = 0;
    assert_eq!(
        codec::decode(Bytes::from(older)).unwrap_err().message(),
        "the envelope has an unsupported format version"
    );

    let mut flipped = encoded.clone();
    *flipped.last_mut().unwrap() ^= 1;
    assert_eq!(
        codec::decode(Bytes::from(flipped)).unwrap_err().message(),
        "the envelope's checksum does not match"
    );

    let mut longer = encoded;
    longer.push(0);
    assert_eq!(
        codec::decode(Bytes::from(longer)).unwrap_err().message(),
        "the envelope's lengths do not match its size"
    );
}

#[test]
fn credentials_never_reach_the_encoded_bytes() {
    let secrets = [
        "Bearer s3cr3t-token-value",
        "session=c00kie-s3cr3t",
        "Basic pr0xy-s3cr3t",
    ];
    let cached = response(
        "https://example.com/account",
        Bytes::from_static(b"account page"),
    );
    let request = http::Request::get("https://example.com/account")
        .header("authorization", secrets[0])
        .header("cookie", secrets[1])
        .header("cookie", "second=c00kie-tw0")
        .header("proxy-authorization", secrets[2])
        .header("accept-language", "fr")
        .body(())
        .unwrap();
    let policy = policy_for_request(&request, &cached);
    let metadata = EntryMetadata::new(SystemTime::now(), Duration::from_secs(60), vec![]);
    let entry = CacheEntry::new(cached.clone(), policy, metadata);
    let encoded = codec::encode("account", &entry).unwrap();
    for secret in [
        "s3cr3t-token-value",
        "c00kie-s3cr3t",
        "pr0xy-s3cr3t",
        "c00kie-tw0",
    ] {
        assert!(
            !encoded
                .windows(secret.len())
                .any(|window| window == secret.as_bytes()),
            "{secret} is in the encoded bytes"
        );
    }
    // The rest of the request survives, and the entry decodes to the same decisions for a
    // request without credentials.
    assert!(encoded.windows(2).any(|window| window == b"fr"));
    let decoded = codec::decode(Bytes::from(encoded)).unwrap();
    assert_same_response(&decoded.entry.response, &cached, "redacted entry");
    assert_eq!(
        decoded
            .entry
            .policy()
            .time_to_live(SystemTime::now())
            .as_secs(),
        entry.policy().time_to_live(SystemTime::now()).as_secs()
    );
}

#[test]
fn a_response_that_varies_on_cookie_never_matches_another_cookie_after_redaction() {
    let mut cached = response("https://example.com/v", Bytes::from_static(b"for alice"));
    cached
        .headers
        .insert("vary", HeaderValue::from_static("cookie"));
    let alice = http::Request::get("https://example.com/v")
        .header("cookie", "user=alice")
        .body(())
        .unwrap();
    let policy = policy_for_request(&alice, &cached);
    let entry = CacheEntry::new(
        cached,
        policy,
        EntryMetadata::new(SystemTime::now(), Duration::from_secs(60), vec![]),
    );
    let decoded = codec::decode(Bytes::from(codec::encode("v", &entry).unwrap())).unwrap();
    let now = SystemTime::now();
    for request in [
        http::Request::get("https://example.com/v")
            .body(())
            .unwrap(),
        http::Request::get("https://example.com/v")
            .header("cookie", "user=bob")
            .body(())
            .unwrap(),
    ] {
        assert!(
            !decoded
                .entry
                .policy()
                .before_request(&request, now)
                .satisfies_without_revalidation()
        );
    }
}

/// The checksum of an envelope, recomputed after a test changed its bytes on purpose.
fn fix_checksum(bytes: &mut [u8]) {
    let checksum = xxhash_rust::xxh3::xxh3_64(&bytes[16..]);
    bytes[8..16].copy_from_slice(&checksum.to_le_bytes());
}

#[test]
fn the_policy_is_decoded_on_first_use_and_an_undecodable_one_forbids_reuse() {
    let cached = response("https://example.com/lazy", Bytes::from_static(b"lazy body"));
    let entry = entry_of(cached.clone(), vec!["t".to_owned()]);
    let encoded = codec::encode("lazy", &entry).unwrap();

    // Read back, the policy stays serialized: writing the entry again reuses those bytes,
    // so the envelope is the same, byte for byte.
    let decoded = codec::decode_for_key(Bytes::from(encoded.clone()), "lazy").unwrap();
    assert_eq!(
        decoded.serialized_policy().map(Bytes::len),
        Some(codec::encode_policy(entry.policy()).unwrap().len())
    );
    assert_eq!(codec::encode("lazy", &decoded).unwrap(), encoded);
    let (response, policy, metadata) = decoded.into_parts();
    assert_same_response(&response, &cached, "into_parts");
    assert_equivalent_policy(
        &policy,
        entry.policy(),
        &request_for(&cached.url),
        "into_parts",
    );
    assert_eq!(metadata, entry.metadata);

    // A policy whose bytes are not a policy, under a valid checksum (only a writer of
    // another format makes one): the entry decodes, its policy does not.
    let policy_len = codec::encode_policy(entry.policy()).unwrap().len();
    let mut broken = encoded.clone();
    let metadata_len = u32::from_le_bytes(broken[16..20].try_into().unwrap()) as usize;
    let policy_end = FIXED_HEADER_LEN + metadata_len;
    broken[policy_end - policy_len..policy_end].fill(0xff);
    fix_checksum(&mut broken);
    let decoded = codec::decode_for_key(Bytes::from(broken), "lazy").unwrap();
    assert_eq!(
        decoded.try_policy().unwrap_err().kind(),
        ErrorKind::CorruptEntry
    );
    // `policy()` never panics: it answers with a policy under which nothing is reused.
    let request = request_for(&cached.url);
    assert!(!decoded.policy().is_storable());
    assert!(
        !decoded
            .policy()
            .before_request(&request, SystemTime::now())
            .satisfies_without_revalidation()
    );
}

#[test]
fn a_borrowed_envelope_writes_the_same_bytes_as_encode_parts() {
    for body in [
        Bytes::new(),
        Bytes::from_static(b"small"),
        Bytes::from(vec![7u8; 70_000]),
    ] {
        let cached = response("https://example.com/borrowed", body);
        let entry = entry_of(cached.clone(), vec!["a".to_owned(), "b".to_owned()]);
        let whole = codec::encode_parts("k", &cached, entry.policy(), &entry.metadata).unwrap();
        let borrowed =
            codec::encode_parts_borrowed("k", &cached, entry.policy(), &entry.metadata).unwrap();
        assert_eq!(borrowed.len(), whole.len());
        let mut written = Vec::new();
        borrowed.write_to(&mut written).unwrap();
        assert_eq!(written, whole);
        assert!(codec::decode_for_key(Bytes::from(written), "k").is_ok());
    }
}
