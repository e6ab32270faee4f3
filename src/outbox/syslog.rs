//! A syslog collector: each record an RFC 5424 message whose MSG is the record's JSON, framed by
//! octet counting (RFC 6587: `<length> <message>`, so a message may hold any byte), over TCP or TLS.
//!
//! TCP syslog has no acknowledgement. A batch goes over a connection of its own: after the last
//! message the service half-closes it and waits until the collector has read everything and closed
//! its side (`confirm = "close"`, what rsyslog, syslog-ng and most collectors do); only then is the
//! batch delivered. A reset, a timeout or a refused connection leaves the batch in the outbox, to be
//! sent again (a collector may then see a record twice: its `eventId` tells the repeat).

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::deliver::SendError;
use crate::config::{SyslogConfirm, SyslogSettings};
use crate::queue::outbox::PendingRecord;

pub struct Syslog {
    settings: SyslogSettings,
    /// HOSTNAME of every message (printable ASCII, at most 255; `-` when there is none).
    hostname: String,
    procid: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    timeout: Duration,
}

impl std::fmt::Debug for Syslog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Syslog({})", self.settings.address)
    }
}

/// `text` as an RFC 5424 header field: printable ASCII without spaces, at most `max` characters;
/// `-` (the nil value) when nothing is left.
fn header_field(text: &str, max: usize) -> String {
    let field: String = text.chars().filter(|c| c.is_ascii_graphic()).take(max).collect();
    if field.is_empty() { "-".to_string() } else { field }
}

impl Syslog {
    pub fn new(settings: &SyslogSettings, host: &str, timeout: Duration) -> Result<Self, String> {
        let tls = match settings.tls {
            false => None,
            true => Some(connector(settings)?),
        };
        Ok(Syslog {
            settings: settings.clone(),
            hostname: header_field(host, 255),
            procid: std::process::id().to_string(),
            tls,
            timeout,
        })
    }

    /// Where the messages go, as `tcp://host:port` or `tls://host:port`.
    pub fn address(&self) -> String {
        let scheme = if self.settings.tls { "tls" } else { "tcp" };
        format!("{scheme}://{}", self.settings.address)
    }

    /// One record as an octet-counted RFC 5424 message:
    /// `<len> <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG`, MSGID being the record's kind
    /// and MSG its JSON.
    pub fn frame(&self, r: &PendingRecord, out: &mut Vec<u8>) {
        let pri = u16::from(self.settings.facility) * 8 + u16::from(r.severity.min(7));
        let message = format!(
            "<{pri}>1 {} {} {} {} {} - {}",
            crate::queue::worker::ms_to_rfc3339(r.at),
            self.hostname,
            header_field(&self.settings.app_name, 48),
            self.procid,
            header_field(&r.kind, 32),
            r.record
        );
        out.extend_from_slice(message.len().to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(message.as_bytes());
    }

    pub async fn send(&self, batch: &[PendingRecord]) -> Result<(), SendError> {
        let mut frames = Vec::with_capacity(batch.iter().map(|r| r.record.len() + 128).sum());
        for r in batch {
            self.frame(r, &mut frames);
        }
        let address = (self.settings.host.as_str(), self.settings.port);
        let unavailable = |what: &str, e: &dyn std::fmt::Display| SendError::Unavailable {
            detail: format!("syslog {}: {what}: {e}", self.settings.address),
        };
        let tcp = tokio::time::timeout(self.timeout, TcpStream::connect(address))
            .await
            .map_err(|e| unavailable("connect", &e))?
            .map_err(|e| unavailable("connect", &e))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => self.deliver(tcp, &frames).await,
            Some((connector, name)) => {
                let stream = tokio::time::timeout(self.timeout, connector.connect(name.clone(), tcp))
                    .await
                    .map_err(|e| unavailable("TLS handshake", &e))?
                    .map_err(|e| match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
                        // The collector's certificate is not trusted for that name: no retry will fix it.
                        Some(tls @ rustls::Error::InvalidCertificate(_)) => SendError::Refused {
                            detail: format!("syslog {}: TLS handshake: {tls}", self.settings.address),
                        },
                        _ => unavailable("TLS handshake", &e),
                    })?;
                self.deliver(stream, &frames).await
            }
        }
    }

    /// Writes the frames and waits for the collector's confirmation (see the module's doc).
    async fn deliver<S: AsyncRead + AsyncWrite + Unpin>(&self, mut stream: S, frames: &[u8]) -> Result<(), SendError> {
        let unavailable = |what: &str, e: &dyn std::fmt::Display| SendError::Unavailable {
            detail: format!("syslog {}: {what}: {e}", self.settings.address),
        };
        let written = async {
            stream.write_all(frames).await?;
            stream.flush().await
        };
        tokio::time::timeout(self.timeout, written)
            .await
            .map_err(|e| unavailable("send", &e))?
            .map_err(|e| unavailable("send", &e))?;
        if self.settings.confirm == SyslogConfirm::Written {
            return Ok(());
        }
        // Half-close (TLS: close_notify first), then read until the collector closes its side.
        let confirmed = async {
            stream.shutdown().await?;
            let mut sink = [0u8; 512];
            loop {
                match stream.read(&mut sink).await {
                    Ok(0) => return Ok(()),
                    Ok(_) => continue,
                    // A TLS peer that closes the connection without its own close_notify has still
                    // read everything before it closed.
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        };
        tokio::time::timeout(self.timeout, confirmed)
            .await
            .map_err(|e| unavailable("waiting for the collector to close the connection", &e))?
            .map_err(|e| unavailable("waiting for the collector to close the connection", &e))
    }
}

/// A TLS connector trusting the system's roots and `ca_file`'s, and the name to check.
fn connector(settings: &SyslogSettings) -> Result<(TlsConnector, ServerName<'static>), String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(file) = &settings.ca_file {
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(file)
            .map_err(|e| format!("cannot read ca_file {}: {e}", file.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("ca_file {}: {e}", file.display()))?;
            roots.add(cert).map_err(|e| format!("ca_file {}: {e}", file.display()))?;
        }
    }
    if roots.is_empty() {
        return Err("no trusted root certificates (none in the system, no ca_file)".to_string());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(settings.server_name.clone())
        .map_err(|_| format!("server_name {:?} is not a DNS name or an IP address", settings.server_name))?;
    Ok((TlsConnector::from(Arc::new(config)), name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SyslogSettings {
        SyslogSettings {
            address: "127.0.0.1:514".into(),
            host: "127.0.0.1".into(),
            port: 514,
            tls: false,
            server_name: "127.0.0.1".into(),
            ca_file: None,
            facility: 16,
            app_name: "genesys-provisioner".into(),
            confirm: SyslogConfirm::Close,
        }
    }

    #[test]
    fn a_record_is_an_octet_counted_rfc5424_message_with_its_json_as_msg() {
        let syslog = Syslog::new(&settings(), "host one", Duration::from_secs(1)).unwrap();
        let record = PendingRecord {
            id: 1,
            kind: "intake.accepted".into(),
            at: 1_700_000_000_123,
            severity: 4,
            record: r#"{"eventId":"e","x":"é"}"#.into(),
        };
        let mut out = Vec::new();
        syslog.frame(&record, &mut out);
        let text = String::from_utf8(out).unwrap();
        let (length, message) = text.split_once(' ').unwrap();
        assert_eq!(length.parse::<usize>().unwrap(), message.len(), "the count is of bytes");
        let pid = std::process::id();
        assert_eq!(
            message,
            format!(
                "<132>1 2023-11-14T22:13:20.123Z hostone genesys-provisioner {pid} intake.accepted - {{\"eventId\":\"e\",\"x\":\"é\"}}"
            )
        );
        assert_eq!(header_field("", 5), "-");
        assert_eq!(header_field("a-very-long-kind", 5), "a-ver");
    }
}
