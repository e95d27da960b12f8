//! What a host interface (`parent`) costs, against the kernel's macvlan in bridge
//! mode on the same parent: 64-byte UDP datagrams per second and TCP goodput from a
//! host on the parent's LAN to an endpoint, and TCP back.
//!
//! `cargo run --release -p switchyard-bench --example parent [-- SECS REPEATS]`, as
//! root. It makes namespaces `yp<pid>-par` (the parent `eth1`, one end of a veth),
//! `yp<pid>-lan` (the LAN host, `lan0`, 10.77.0.100) and, for the kernel, `yp<pid>-k`
//! (a macvlan of `eth1`, 10.77.0.2), and removes them at the end, also on a panic.
//! Results go to stdout as a table of medians (docs/host-interfaces.md quotes them).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Command;
use std::time::Duration;
use switchyard::control::protocol::{CountersReport, Request, Table};
use switchyard::control::Switchyard;
use switchyard::topology::{EndpointBuilder, NetworkBuilder, Topology};
use switchyard_bench::{iperf, load, median};
use switchyard_os::netns;

const LAN_HOST: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
const EP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

struct Names(Vec<String>);

impl Drop for Names {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = netns::delete(n);
        }
    }
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("ip runs");
    assert!(st.success(), "ip {args:?}");
}

struct Result {
    udp_pps: f64,
    udp_loss: f64,
    tcp_in: f64,
    tcp_out: f64,
}

fn measure(lan: &str, ep_ns: &str, secs: u64, repeats: usize) -> Result {
    let sink = load::UdpSink::start(ep_ns, SocketAddrV4::new(EP, 9000)).unwrap();
    let to = SocketAddrV4::new(EP, 9000);
    // Warm up: ARP, learning.
    let _ = load::trial(lan, to, &sink, None, Duration::from_millis(300));
    let mut pps = Vec::new();
    let mut loss = Vec::new();
    let mut tin = Vec::new();
    let mut tout = Vec::new();
    for _ in 0..repeats {
        let t = load::trial(lan, to, &sink, None, Duration::from_secs(secs)).unwrap();
        pps.push(t.received_pps);
        loss.push(t.loss);
        let d = Duration::from_secs(secs);
        tin.push(iperf::tcp_bulk(lan, ep_ns, EP, 5201, 1, d).unwrap());
        tout.push(iperf::tcp_bulk(ep_ns, lan, LAN_HOST, 5202, 1, d).unwrap());
    }
    Result {
        udp_pps: median(&pps),
        udp_loss: median(&loss),
        tcp_in: median(&tin),
        tcp_out: median(&tout),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let repeats: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let p = format!("yp{}-", std::process::id());
    let (par, lan, k) = (format!("{p}par"), format!("{p}lan"), format!("{p}k"));
    let _names = Names(vec![par.clone(), lan.clone(), k.clone()]);
    for n in [&par, &lan, &k] {
        netns::create(n).unwrap();
    }
    ip(&[
        "-n", &par, "link", "add", "eth1", "type", "veth", "peer", "name", "lan0", "netns", &lan,
    ]);
    ip(&["-n", &par, "link", "set", "eth1", "up"]);
    ip(&["-n", &lan, "addr", "add", "10.77.0.100/24", "dev", "lan0"]);
    ip(&["-n", &lan, "link", "set", "lan0", "up"]);
    ip(&["-n", &lan, "link", "set", "lo", "up"]);

    // The kernel: a macvlan of eth1 in bridge mode, in a namespace of its own.
    ip(&[
        "-n", &par, "link", "add", "mv0", "link", "eth1", "type", "macvlan", "mode", "bridge",
    ]);
    ip(&["-n", &par, "link", "set", "mv0", "netns", &k]);
    ip(&["-n", &k, "addr", "add", "10.77.0.2/24", "dev", "mv0"]);
    ip(&["-n", &k, "link", "set", "mv0", "up"]);
    ip(&["-n", &k, "link", "set", "lo", "up"]);
    let kernel = measure(&lan, &k, secs, repeats);
    ip(&["-n", &k, "link", "del", "mv0"]);

    let mut rows = vec![("kernel macvlan (bridge)".to_string(), kernel)];
    let mut tap_rows = Vec::new();
    let mut delivered = Vec::new();
    for (workers, ipvlan) in [(1usize, false), (2, false), (2, true)] {
        let net = NetworkBuilder::new("lan", "10.77.0.0/24").parent("eth1", Some(&par));
        let net = if ipvlan { net.ipvlan_l2() } else { net };
        let mode = if ipvlan { "ipvlan-l2" } else { "macvlan" };
        let topo = Topology::builder()
            .source("parent bench")
            .prefix(format!("{p}w{workers}{}-", &mode[..1]))
            .switch(|s| s.workers = workers)
            .network(net)
            .endpoint(EndpointBuilder::new("a").on("lan").ip(EP))
            .endpoint(EndpointBuilder::new("b").on("lan"))
            .build()
            .unwrap();
        let run = std::env::temp_dir().join("switchyard-parent-bench");
        // The LAN host still has the previous system's MAC for the same address.
        ip(&["-n", &lan, "neigh", "flush", "all"]);
        let sy = Switchyard::start(topo, &run).unwrap();
        let ep_ns = format!("{p}w{workers}{}-a", &mode[..1]);
        let r = measure(&lan, &ep_ns, secs, repeats);
        // The same instance between two TAPs, for where the cost is.
        let sink = load::UdpSink::start(&ep_ns, SocketAddrV4::new(EP, 9001)).unwrap();
        let b = format!("{p}w{workers}{}-b", &mode[..1]);
        let to = SocketAddrV4::new(EP, 9001);
        let _ = load::trial(&b, to, &sink, None, Duration::from_millis(300));
        let taps: Vec<f64> = (0..repeats)
            .map(|_| {
                load::trial(&b, to, &sink, None, Duration::from_secs(secs))
                    .unwrap()
                    .received_pps
            })
            .collect();
        drop(sink);
        // What the veth handed over: frames, super-frames among them, bytes.
        let reply = switchyard::control::client::request(
            sy.socket(),
            &Request::Show {
                table: Table::Counters,
            },
        )
        .unwrap();
        let c: CountersReport = serde_json::from_value(reply.payload()).unwrap();
        if let Some(pc) = c.ports.iter().find(|x| x.port == "parent:eth1") {
            delivered.push((
                mode,
                workers,
                pc.rx_frames,
                pc.rx_gso,
                pc.rx_bytes,
                pc.rx_kernel_drops,
            ));
        }
        sy.stop().unwrap();
        rows.push((format!("switchyard {mode}, {workers} worker(s)"), r));
        tap_rows.push((mode, workers, median(&taps)));
    }
    println!(
        "{:<34} {:>14} {:>8} {:>16} {:>16}",
        "system", "UDP 64 B pps", "loss", "TCP LAN->ep Gb/s", "TCP ep->LAN Gb/s"
    );
    for (name, r) in rows {
        println!(
            "{:<34} {:>14.0} {:>7.1}% {:>16.2} {:>16.2}",
            name,
            r.udp_pps,
            r.udp_loss * 100.0,
            r.tcp_in,
            r.tcp_out
        );
    }
    for (mode, workers, pps) in tap_rows {
        println!(
            "switchyard ({mode}, {workers} worker(s)) TAP -> TAP: UDP 64 B {pps:.0} pps received"
        );
    }
    for (mode, workers, frames, gso, bytes, dropped) in delivered {
        println!(
            "parent:eth1 ({mode}, {workers} worker(s)) received {frames} frames, {gso} of them \
             super-frames, {bytes} bytes; {dropped} dropped by the kernel"
        );
    }
}
