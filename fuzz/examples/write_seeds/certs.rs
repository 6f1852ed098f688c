//! Seeds of the certificate targets: `pem_load` (PEM files, a test CA and chains, a PKCS#1 key)
//! and `cert_extensions` (the IAM known-answer cases of `proxy/tests/vectors/iam/`).

use std::path::Path;

use efs_proxy_fuzz::CertInput;

use crate::Seeds;

pub(crate) fn pem_load(s: &Seeds, vectors: &Path) {
    let t = "pem_load";
    for entry in std::fs::read_dir(vectors).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pem") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            s.write(t, &name, &std::fs::read(&path).unwrap());
        }
    }
    // A test CA and a client certificate signed by it, as tests/src/pki.rs makes them.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "fuzz test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let client_key = rcgen::KeyPair::generate().unwrap();
    let client =
        rcgen::CertificateParams::new(vec!["fs-0123456789abcdef0.s3files.us-east-1.on.aws".into()])
            .unwrap()
            .signed_by(&client_key, &issuer)
            .unwrap();
    s.write(t, "ca.pem", ca.pem().as_bytes());
    s.write(t, "ecdsa-key.pem", client_key.serialize_pem().as_bytes());
    s.write(
        t,
        "cert-and-key-with-comments.pem",
        format!(
            "# efs-utils comment\n{}# another\n{}",
            client.pem(),
            client_key.serialize_pem()
        )
        .as_bytes(),
    );
    s.write(
        t,
        "chain.pem",
        format!("{}{}", client.pem(), ca.pem()).as_bytes(),
    );
    // PKCS#1 (`BEGIN RSA PRIVATE KEY`), which the key loader converts.
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    let pkcs8 = std::fs::read_to_string(vectors.join("test-key-rsa3072.pem")).unwrap();
    let key = rsa::PrivateKey::from_pkcs8_pem(&pkcs8).unwrap();
    let pkcs1 = key.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).unwrap();
    s.write(t, "rsa-pkcs1-key.pem", pkcs1.as_bytes());
}

/// Seconds from 1950-01-01 of an `X-Amz-Date`.
fn seconds_since_1950(amz_date: &str) -> u32 {
    let t = efs_proxy::iam::SigningTime::parse_amz_date(amz_date).unwrap();
    (t.offset_date_time().unix_timestamp() + 631_152_000) as u32
}

pub(crate) fn cert_extensions(s: &Seeds, vectors: &Path) {
    let t = "cert_extensions";
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(vectors.join("iam-cert-vectors.json")).unwrap())
            .unwrap();
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    for case in json["cases"].as_array().unwrap() {
        let date = text(&case["sigv4_datetime"]).unwrap();
        let input = CertInput {
            sign: true,
            efs: case["service"] == "elasticfilesystem",
            build: true,
            time: seconds_since_1950(&date),
            backdate: 900,
            lifetime: 10_800,
            access_key_id: text(&case["access_key_id"]).unwrap(),
            secret_access_key: text(&case["secret_access_key"]).unwrap(),
            session_token: text(&case["session_token"]),
            signature: text(&case["signature"]).unwrap_or_default(),
            fs_id: text(&case["fs_id"]).unwrap(),
            region: text(&case["region"]).unwrap(),
            access_point: text(&case["access_point_id"]),
            source: text(&case["client_info"]["source"]).unwrap_or_default(),
            version: text(&case["client_info"]["efs_utils_version"]).unwrap_or_default(),
            common_name: "ip-10-0-0-1.ec2.internal".into(),
            text: date,
            tlv_tag: 0x0c,
            tlv_content: text(&case["fs_id"]).unwrap().into_bytes(),
        };
        let name = text(&case["name"]).unwrap();
        s.write(t, &name, &input.encode());
        let unsigned = CertInput {
            sign: false,
            build: false,
            text: "2026-04-15T12:34:56+02:00".into(),
            tlv_tag: 0x30,
            tlv_content: vec![0x42; 300],
            ..input
        };
        s.write(t, &format!("{name}-unsigned"), &unsigned.encode());
    }
}
