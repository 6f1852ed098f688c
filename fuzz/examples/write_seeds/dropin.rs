//! Seeds of `dropin_config`: stunnel-style configs as efs-utils writes them, and edge cases.

use crate::Seeds;

/// The configs efs-utils 3.2.0 writes (proxy/tests/dropin.rs), and the parser's edge cases.
pub(crate) fn dropin_config(s: &Seeds) {
    let t = "dropin_config";
    let s3files = "fips = no\nforeground = yes\nsocket = l:SO_REUSEADDR=yes\nsocket = a:SO_BINDTODEVICE=lo\noutput = /var/log/amazon/efs/fs-0123456789abcdef0.mnt.s3files.20100.efs-proxy.log\npid = /var/run/efs/fs-0123456789abcdef0.mnt.s3files.20100+/stunnel.pid\n[efs]\nclient = yes\naccept = 127.0.0.1:20100\nconnect = use1-az1.fs-0123456789abcdef0.s3files.us-east-1.on.aws:2049\nsslVersion = TLSv1.2\nrenegotiation = no\nTIMEOUTbusy = 20\nTIMEOUTclose = 0\nTIMEOUTidle = 70\ndelay = yes\nverify = 2\nCAfile = /etc/amazon/efs/efs-utils.crt\ncert = /var/run/efs/fs-0123456789abcdef0.mnt.s3files.20100+/certificate.pem\nkey = /etc/amazon/efs/privateKey.pem\ncheckHost = fs-0123456789abcdef0.s3files.us-east-1.on.aws\nretry_nfs_mount_command_timeout_sec = 15\nproxy_logging_level = INFO\nproxy_logging_max_bytes = 1048576\nproxy_logging_file_count = 10\ncloud_watch_metrics = True\ncloud_watch_logs = True\nlog_group_name = /aws/efs/utils\ncloud_watch_logs_retention_days = 14\nfs_id = fs-0123456789abcdef0\nregion = us-east-1\nefs_utils_version = 3.2.0";
    let efs = "fips = no\nforeground = yes\nsocket = l:SO_REUSEADDR=yes\nsocket = a:SO_BINDTODEVICE=lo\npid = /var/run/efs/fs-0123456789abcdef0.mnt.20200+/stunnel.pid\n[efs]\nclient = yes\naccept = 127.0.0.1:20200\nconnect = fs-0123456789abcdef0.efs.us-east-1.amazonaws.com:2049\nsslVersion = TLSv1.2\nrenegotiation = no\nTIMEOUTbusy = 20\nTIMEOUTclose = 0\nTIMEOUTidle = 70\ndelay = yes\nverify = 2\nCAfile = /etc/amazon/efs/efs-utils.crt\ncert = /var/run/efs/fs-0123456789abcdef0.mnt.20200+/certificate.pem\nkey = /etc/amazon/efs/privateKey.pem\ncheckHost = fs-0123456789abcdef0.efs.us-east-1.amazonaws.com\n";
    let aliases = "# written by a test\r\n; another comment\r\nfips = No\r\npid_file_path = /run/p.pid\r\ndebug = DEBUG\r\n[nested_config]\r\nlisten_addr = 127.0.0.1:20200\r\nmount_target_addr = fs-1.efs.eu-west-1.amazonaws.com:2049\r\n[other]\r\nfips = yes\r\n";
    let stdout = "fips = no\npid = /p\nlog_format = stdout\ndebug = nonsense\n[efs]\naccept = [::1]:1\nconnect = h:2049\nproxy_logging_level = loud\nproxy_init_timeout_sec = 0\n";
    let duplicate = "fips = no\npid = /p\n[efs]\naccept = 127.0.0.1:20049\nconnect = h:2049\nlisten_addr = 127.0.0.1:1\n";
    let bad_number = "fips = yes\npid = /p\n[efs]\naccept = 127.0.0.1:20049\nconnect = h:2049\nproxy_logging_max_bytes = -5\ncert =\n";
    for (name, text) in [
        ("s3files", s3files),
        ("efs", efs),
        ("aliases-crlf", aliases),
        ("stdout", stdout),
        ("duplicate", duplicate),
        ("bad-number", bad_number),
    ] {
        s.write(t, name, text.as_bytes());
    }
}
