//! The byte format of the `cert_extensions` input.

use crate::input::Reader;

/// Input of the `cert_extensions` target. Byte format: `[flags: u8][time: u32][backdate: u16]
/// [lifetime: u32][tlv tag: u8]`, then the text fields in the order of the struct, separated
/// by 0xff (never part of UTF-8), and last the TLV content (the rest, raw). Text fields are
/// decoded lossily, so every input is valid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertInput {
    /// Sign with the secret key (else `signature` goes into extension 7.2 as is).
    pub sign: bool,
    /// EFS (else S3 Files).
    pub efs: bool,
    /// Build and parse the whole certificate too.
    pub build: bool,
    /// Seconds since 1950-01-01T00:00:00Z.
    pub time: u32,
    pub backdate: u16,
    pub lifetime: u32,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    pub signature: String,
    pub fs_id: String,
    pub region: String,
    pub access_point: Option<String>,
    pub source: String,
    pub version: String,
    pub common_name: String,
    /// Fed to the signing-time parsers; also the bytes after the TLV.
    pub text: String,
    pub tlv_tag: u8,
    pub tlv_content: Vec<u8>,
}

const CERT_SIGN: u8 = 1;
const CERT_EFS: u8 = 2;
const CERT_BUILD: u8 = 4;
const CERT_TOKEN: u8 = 8;
const CERT_ACCESS_POINT: u8 = 16;

impl CertInput {
    pub fn parse(data: &[u8]) -> CertInput {
        let mut r = Reader(data);
        let flags = r.u8();
        let time = u32::from(r.u16()) << 16 | u32::from(r.u16());
        let backdate = r.u16();
        let lifetime = u32::from(r.u16()) << 16 | u32::from(r.u16());
        let tlv_tag = r.u8();
        let mut fields = r.0.splitn(12, |b| *b == 0xff);
        let mut text = || String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
        let access_key_id = text();
        let secret_access_key = text();
        let token = text();
        let session_token = (flags & CERT_TOKEN != 0).then_some(token);
        let signature = text();
        let fs_id = text();
        let region = text();
        let access_point_id = text();
        let access_point = (flags & CERT_ACCESS_POINT != 0).then_some(access_point_id);
        let source = text();
        let version = text();
        let common_name = text();
        let text_field = text();
        let tlv_content = fields.next().unwrap_or_default().to_vec();
        CertInput {
            sign: flags & CERT_SIGN != 0,
            efs: flags & CERT_EFS != 0,
            build: flags & CERT_BUILD != 0,
            time,
            backdate,
            lifetime,
            access_key_id,
            secret_access_key,
            session_token,
            signature,
            fs_id,
            region,
            access_point,
            source,
            version,
            common_name,
            text: text_field,
            tlv_tag,
            tlv_content,
        }
    }

    /// The bytes that [`CertInput::parse`] turns into `self` (for seeds; text fields must not
    /// contain U+FFFD, the TLV content may be anything).
    pub fn encode(&self) -> Vec<u8> {
        let mut flags = 0;
        for (on, bit) in [
            (self.sign, CERT_SIGN),
            (self.efs, CERT_EFS),
            (self.build, CERT_BUILD),
            (self.session_token.is_some(), CERT_TOKEN),
            (self.access_point.is_some(), CERT_ACCESS_POINT),
        ] {
            if on {
                flags |= bit;
            }
        }
        let mut out = vec![flags];
        out.extend(self.time.to_be_bytes());
        out.extend(self.backdate.to_be_bytes());
        out.extend(self.lifetime.to_be_bytes());
        out.push(self.tlv_tag);
        let fields = [
            self.access_key_id.as_str(),
            &self.secret_access_key,
            self.session_token.as_deref().unwrap_or(""),
            &self.signature,
            &self.fs_id,
            &self.region,
            self.access_point.as_deref().unwrap_or(""),
            &self.source,
            &self.version,
            &self.common_name,
            &self.text,
        ];
        for field in fields {
            out.extend(field.as_bytes());
            out.push(0xff);
        }
        out.extend(&self.tlv_content);
        out
    }
}
