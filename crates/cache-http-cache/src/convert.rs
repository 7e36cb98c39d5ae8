//! Conversions between http-cache's `HttpResponse` and the core's `CachedResponse`.

use bytes::Bytes;
use cache_core::{CachedResponse, Error, ErrorKind, Result};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_cache::{HttpHeaders, HttpResponse, HttpVersion};

/// The header of a stored entry that carries `HttpResponse::metadata` (hex, after `m:`),
/// taken out again when the entry is read through the adapter. A response header of this
/// name from upstream is stored after `u:` and handed back as the header it was, so an
/// origin cannot make its header pass for the metadata.
pub const METADATA_HEADER: &str = "x-http-cache-adapter-metadata";

/// What follows it in a stored value: the adapter's metadata, or an upstream header.
const METADATA_MARK: &[u8] = b"m:";
const UPSTREAM_MARK: &[u8] = b"u:";

const NAME: &str = "http-cache adapter";

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidInput, NAME, message)
}

/// The response http-cache hands to a manager, as this workspace stores it: status,
/// version, URL, every header value in order and the body (taken without a copy when
/// `response` is the only owner of its body, as in a put).
pub fn from_http_cache_response(response: HttpResponse) -> Result<CachedResponse> {
    let status = StatusCode::from_u16(response.status)
        .map_err(|_| invalid(format!("{} is not an HTTP status", response.status)))?;
    let mut headers = HeaderMap::new();
    for (name, value) in &response.headers {
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("{name:?} is not a header name")))?;
        let header_value = if header_name.as_str() == METADATA_HEADER {
            // An upstream header of the reserved name: marked, so it is never read back
            // as the metadata.
            HeaderValue::from_bytes(&[UPSTREAM_MARK, value.as_bytes()].concat())
        } else {
            HeaderValue::from_bytes(value.as_bytes())
        }
        .map_err(|_| invalid(format!("the value of {name} is not a header value")))?;
        headers.append(header_name, header_value);
    }
    if let Some(metadata) = &response.metadata {
        let marked = format!("m:{}", to_hex(metadata));
        let hex = HeaderValue::from_str(&marked)
            .map_err(|_| invalid("the metadata cannot be stored".to_owned()))?;
        headers.append(HeaderName::from_static(METADATA_HEADER), hex);
    }
    Ok(CachedResponse::new(response.url, status)
        .with_version(http::Version::from(response.version))
        .with_headers(headers)
        .with_body(Bytes::from(response.body)))
}

/// A stored response as http-cache takes it. Header values that are not UTF-8 cannot be
/// expressed in http-cache's headers and are left out; the metadata header becomes
/// `HttpResponse::metadata` again.
pub fn to_http_cache_response(response: &CachedResponse) -> HttpResponse {
    let mut headers = HttpHeaders::new();
    let mut metadata = None;
    for (name, value) in &response.headers {
        let mut value = value.as_bytes();
        if name.as_str() == METADATA_HEADER {
            if let Some(hex) = value.strip_prefix(METADATA_MARK) {
                metadata = from_hex(hex);
                continue;
            }
            match value.strip_prefix(UPSTREAM_MARK) {
                Some(upstream) => value = upstream,
                // Stored by an earlier version of the adapter, which wrote the metadata
                // unmarked (and never stored an upstream header of this name on its own).
                None => {
                    metadata = from_hex(value);
                    continue;
                }
            }
        }
        if let Ok(text) = std::str::from_utf8(value) {
            headers.append(name.as_str().to_owned(), text.to_owned());
        }
    }
    HttpResponse {
        body: response.body.to_vec(),
        headers,
        status: response.status.as_u16(),
        url: response.url.clone(),
        version: http_version(response.version),
        metadata,
    }
}

fn http_version(version: http::Version) -> HttpVersion {
    // `http::Version` has no other values today; a future one is reported as HTTP/1.1,
    // which only affects the status line http-cache would write.
    HttpVersion::try_from(version).unwrap_or(HttpVersion::Http11)
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(2 * bytes.len());
    for byte in bytes {
        hex.push(DIGITS[usize::from(byte >> 4)] as char);
        hex.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    hex
}

fn from_hex(hex: &[u8]) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.chunks_exact(2)
        .map(|pair| {
            let high = (pair[0] as char).to_digit(16)?;
            let low = (pair[1] as char).to_digit(16)?;
            Some((high * 16 + low) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> HttpResponse {
        let mut headers = HttpHeaders::new();
        headers.append("set-cookie".into(), "a=1".into());
        headers.append("set-cookie".into(), "b=2".into());
        headers.append("set-cookie".into(), "c=3".into());
        headers.append(
            "content-disposition".into(),
            "attachment; filename=\"Grüße.txt\"".into(),
        );
        headers.append("cache-control".into(), "max-age=60".into());
        HttpResponse {
            body: b"body bytes \x00\xff".to_vec(),
            headers,
            status: 203,
            url: "https://example.com/a?b=c".parse().unwrap(),
            version: HttpVersion::H2,
            metadata: Some(vec![0, 1, 254, 255]),
        }
    }

    fn values<'a>(headers: &'a HttpHeaders, name: &str) -> Vec<&'a str> {
        headers
            .iter()
            .filter(|(key, _)| key.as_str() == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }

    #[test]
    fn a_response_round_trips_with_every_value_in_order_and_its_metadata() {
        let original = sample();
        let cached = from_http_cache_response(original.clone()).unwrap();
        assert_eq!(cached.status, StatusCode::NON_AUTHORITATIVE_INFORMATION);
        assert_eq!(cached.version, http::Version::HTTP_2);
        let cookies: Vec<&[u8]> = cached
            .headers
            .get_all("set-cookie")
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        assert_eq!(cookies, [&b"a=1"[..], b"b=2", b"c=3"]);
        assert_eq!(
            cached.headers["content-disposition"].as_bytes(),
            "attachment; filename=\"Grüße.txt\"".as_bytes()
        );

        let back = to_http_cache_response(&cached);
        assert_eq!(back.body, original.body);
        assert_eq!(back.status, 203);
        assert_eq!(back.url, original.url);
        assert_eq!(back.version, HttpVersion::H2);
        assert_eq!(back.metadata, Some(vec![0, 1, 254, 255]));
        assert_eq!(values(&back.headers, "set-cookie"), ["a=1", "b=2", "c=3"]);
        assert_eq!(
            values(&back.headers, "content-disposition"),
            ["attachment; filename=\"Grüße.txt\""]
        );
        assert_eq!(values(&back.headers, METADATA_HEADER), Vec::<&str>::new());
        assert_eq!(back.headers.iter().count(), 5);
    }

    #[test]
    fn an_upstream_header_of_the_reserved_name_stays_a_header_and_is_not_metadata() {
        let mut response = sample();
        response.metadata = None;
        response
            .headers
            .append(METADATA_HEADER.into(), "00ff".into());
        let back = to_http_cache_response(&from_http_cache_response(response).unwrap());
        assert_eq!(back.metadata, None);
        assert_eq!(values(&back.headers, METADATA_HEADER), ["00ff"]);
        // With metadata of its own too, each keeps its place.
        let mut response = sample();
        response
            .headers
            .append(METADATA_HEADER.into(), "abcd".into());
        let back = to_http_cache_response(&from_http_cache_response(response).unwrap());
        assert_eq!(back.metadata, Some(vec![0, 1, 254, 255]));
        assert_eq!(values(&back.headers, METADATA_HEADER), ["abcd"]);
    }

    #[test]
    fn metadata_an_earlier_adapter_stored_unmarked_is_still_read() {
        let mut cached = from_http_cache_response(HttpResponse {
            metadata: None,
            ..sample()
        })
        .unwrap();
        cached.headers.insert(
            HeaderName::from_static(METADATA_HEADER),
            HeaderValue::from_static("0102"),
        );
        assert_eq!(to_http_cache_response(&cached).metadata, Some(vec![1, 2]));
    }

    #[test]
    fn a_value_that_is_not_utf8_is_left_out_and_the_others_stay() {
        let mut cached = from_http_cache_response(sample()).unwrap();
        cached
            .headers
            .append("x-latin1", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        let back = to_http_cache_response(&cached);
        assert_eq!(values(&back.headers, "x-latin1"), Vec::<&str>::new());
        assert_eq!(back.headers.iter().count(), 5);
    }

    #[test]
    fn a_header_http_cannot_carry_is_an_invalid_input() {
        let mut response = sample();
        response
            .headers
            .append("x-bad".into(), "line\nbreak".into());
        let error = from_http_cache_response(response).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
        let mut response = sample();
        response.status = 1000;
        assert_eq!(
            from_http_cache_response(response).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }
}
