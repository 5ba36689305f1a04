//! Notes in DNS: the TXT strings a publisher pastes into a zone, and looking them up.
//!
//! A note URI is longer than one DNS character-string (255 bytes), so a record holds it as
//! several strings that resolvers hand back in order and that are concatenated. Lookups ask a
//! configured resolver: plain DNS (UDP, TCP when the answer is truncated) or DNS over HTTPS
//! (RFC 8484, through the reader's HTTP client and so through its proxy). Messages are
//! encoded and parsed by `hickory-proto`; answers are bounded in size and time. A TXT answer is
//! never trusted: it is only text that may hold a note, which the note verifier then checks.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::limits::{DNS_TIMEOUT, MAX_DNS_MESSAGE_BYTES};

/// Longest character-string in a TXT record (RFC 1035 §3.3: one length byte).
pub const MAX_TXT_STRING: usize = 255;

/// Splits `text` into TXT character-strings of at most 255 bytes (note URIs are ASCII).
pub fn txt_strings(text: &str) -> Vec<String> {
    text.as_bytes()
        .chunks(MAX_TXT_STRING)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

/// The zone-file line publishing `strings` as one TXT record of `name`.
pub fn zone_line(name: &str, ttl: u32, strings: &[String]) -> String {
    let quoted: Vec<String> = strings.iter().map(|s| format!("\"{s}\"")).collect();
    format!("{name} {ttl} IN TXT {}", quoted.join(" "))
}

/// Where TXT lookups go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsServer {
    /// A plain DNS resolver: UDP, and TCP when an answer is truncated.
    Plain(SocketAddr),
    /// A DNS-over-HTTPS endpoint (`https://…/dns-query`).
    Https(reqwest::Url),
}

impl DnsServer {
    /// Parses `--dns-server`: `IP`, `IP:PORT`, `[IPv6]:PORT` or an `https://` DoH URL
    /// (`http://` only on a loopback address, for a local DoH proxy).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.contains("://") {
            let url = reqwest::Url::parse(text).map_err(|e| format!("{text:?}: {e}"))?;
            let loopback = super::is_loopback(&url);
            return match url.scheme() {
                "https" => Ok(DnsServer::Https(url)),
                "http" if loopback => Ok(DnsServer::Https(url)),
                _ => Err(format!(
                    "{text:?}: a DNS-over-HTTPS server must be an https:// URL"
                )),
            };
        }
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(DnsServer::Plain(addr));
        }
        text.parse::<std::net::IpAddr>()
            .map(|ip| DnsServer::Plain(SocketAddr::new(ip, 53)))
            .map_err(|_| format!("{text:?} is not IP, IP:PORT or an https:// DNS-over-HTTPS URL"))
    }

    /// The first `nameserver` of `/etc/resolv.conf`, the system's resolver.
    pub fn system() -> Option<Self> {
        let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
        text.lines().find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
                .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
                .map(|ip| DnsServer::Plain(SocketAddr::new(ip, 53)))
        })
    }
}

impl std::fmt::Display for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DnsServer::Plain(addr) => write!(f, "{addr}"),
            DnsServer::Https(url) => write!(f, "{url}"),
        }
    }
}

/// Why a TXT lookup gave nothing.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("{0:?} is not a DNS name")]
    BadName(String),
    #[error("no answer from {server} within {}s", .timeout.as_secs())]
    TimedOut { server: String, timeout: Duration },
    #[error("{server}: {reason}")]
    Failed { server: String, reason: String },
    #[error("{name}: the resolver answered {code}")]
    Rcode { name: String, code: String },
}

/// Every TXT record of `name` (each one's strings concatenated), from `server`. DoH requests
/// go through `client` (with the reader's proxy and timeouts).
pub async fn lookup_txt(
    name: &str,
    server: &DnsServer,
    client: &reqwest::Client,
) -> Result<Vec<String>, DnsError> {
    let mut qname = Name::from_ascii(name).map_err(|_| DnsError::BadName(name.to_owned()))?;
    qname.set_fqdn(true);
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(qname, RecordType::TXT));
    let failed = |reason: String| DnsError::Failed {
        server: server.to_string(),
        reason,
    };
    let wire = query.to_vec().map_err(|e| failed(e.to_string()))?;
    let timeout = DNS_TIMEOUT;
    let exchange = async {
        match server {
            DnsServer::Plain(addr) => {
                let answer = udp(*addr, &wire).await.map_err(|e| failed(e.to_string()))?;
                match parse(&answer, query.metadata.id).map_err(failed)? {
                    Some(m) if m.metadata.truncation => {
                        let answer = tcp(*addr, &wire).await.map_err(|e| failed(e.to_string()))?;
                        parse(&answer, query.metadata.id)
                            .map_err(failed)?
                            .ok_or_else(|| failed("answer to another query".into()))
                    }
                    Some(m) => Ok(m),
                    None => Err(failed("answer to another query".into())),
                }
            }
            DnsServer::Https(url) => {
                let answer = doh(client, url, &wire).await.map_err(failed)?;
                parse(&answer, query.metadata.id)
                    .map_err(failed)?
                    .ok_or_else(|| failed("answer to another query".into()))
            }
        }
    };
    let answer = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| DnsError::TimedOut {
            server: server.to_string(),
            timeout,
        })??;
    if answer.metadata.response_code != ResponseCode::NoError {
        return Err(DnsError::Rcode {
            name: name.to_owned(),
            code: answer.metadata.response_code.to_string(),
        });
    }
    Ok(answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect())
}

/// The response if it answers query `id`; `None` for someone else's answer.
fn parse(bytes: &[u8], id: u16) -> Result<Option<Message>, String> {
    let message = Message::from_vec(bytes).map_err(|e| format!("malformed answer: {e}"))?;
    if message.metadata.message_type != MessageType::Response || message.metadata.id != id {
        return Ok(None);
    }
    Ok(Some(message))
}

async fn udp(server: SocketAddr, wire: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let socket = tokio::net::UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    socket.send(wire).await?;
    let mut buf = vec![0u8; MAX_DNS_MESSAGE_BYTES];
    let n = socket.recv(&mut buf).await?;
    buf.truncate(n);
    Ok(buf)
}

/// RFC 1035 §4.2.2: a two-byte length, then the message.
async fn tcp(server: SocketAddr, wire: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = tokio::net::TcpStream::connect(server).await?;
    let mut framed = (wire.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(wire);
    stream.write_all(&framed).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

/// RFC 8484 POST: the wire query as the body, the wire answer back (at most 64 KiB).
async fn doh(client: &reqwest::Client, url: &reqwest::Url, wire: &[u8]) -> Result<Vec<u8>, String> {
    let mut response = client
        .post(url.clone())
        .header("content-type", "application/dns-message")
        .header("accept", "application/dns-message")
        .body(wire.to_vec())
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| e.without_url().to_string())?
    {
        if body.len() + chunk.len() > MAX_DNS_MESSAGE_BYTES {
            return Err(format!("answer larger than {MAX_DNS_MESSAGE_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_at_most_255_bytes_and_rejoin() {
        let text = "q".repeat(600);
        let parts = txt_strings(&text);
        assert_eq!(
            parts.iter().map(String::len).collect::<Vec<_>>(),
            [255, 255, 90]
        );
        assert_eq!(parts.concat(), text);
        assert_eq!(
            zone_line("_qasid", 3600, &["a".into(), "b".into()]),
            "_qasid 3600 IN TXT \"a\" \"b\""
        );
    }

    #[test]
    fn servers_parse() {
        assert_eq!(
            DnsServer::parse("127.0.0.1:5353").unwrap(),
            DnsServer::Plain("127.0.0.1:5353".parse().unwrap())
        );
        assert_eq!(
            DnsServer::parse("9.9.9.9").unwrap(),
            DnsServer::Plain("9.9.9.9:53".parse().unwrap())
        );
        assert!(matches!(
            DnsServer::parse("https://dns.example/dns-query").unwrap(),
            DnsServer::Https(_)
        ));
        assert!(DnsServer::parse("http://dns.example/dns-query").is_err());
        assert!(DnsServer::parse("http://127.0.0.1:8053/dns-query").is_ok());
        assert!(DnsServer::parse("dns.example").is_err());
    }
}
