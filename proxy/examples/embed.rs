//! Embeds the proxy in another program: S3 Files through an NLB, IAM from the standard AWS
//! credential chain, statistics every 10 s, clean stop on Ctrl-C.
//!
//!     cargo run --example embed -- NLB_DNS:2049 fs-0123456789abcdef0 us-east-1

use std::time::Duration;

use efs_proxy::{Auth, IamAuth, ProxyBuilder, Service};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [target, fs_id, region] = args.as_slice() else {
        return Err("usage: embed NLB_DNS:2049 FS_ID REGION".into());
    };
    let proxy = ProxyBuilder::new(target.as_str())
        .server_name(format!("{fs_id}.s3files.{region}.on.aws"))
        .listen("127.0.0.1:20049".parse()?)
        .auth(Auth::Iam(IamAuth::new(
            fs_id.as_str(),
            region.as_str(),
            Service::S3Files,
        )))
        .start()
        .await?;
    println!(
        "mount -t nfs4 -o nfsvers=4.2,port={} 127.0.0.1:/ /mnt",
        proxy.local_addr().port()
    );
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = tick.tick() => println!("{:?}", proxy.stats()),
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    proxy.shutdown().await;
    Ok(())
}
