//! The DNS wire format (RFC 1035), as much as a cluster DNS server needs: one question in, A / SRV / SOA
//! records out, EDNS(0) echoed (RFC 6891), truncation over UDP. Owner names equal to the question point back
//! to it (so the answer keeps the case it was asked in); other names are written in full.

use super::records::{Answer, Data, Rcode, Record};

const HEADER_LEN: usize = 12;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
/// The largest UDP answer sent to a client that advertises more (the DNS Flag Day 2020 value).
const MAX_UDP: usize = 1232;

/// A parsed query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    pub recursion_desired: bool,
    /// The question name as asked, dot-separated, without the final dot.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// The UDP payload size the client advertised with EDNS(0), if it sent an OPT record.
    pub edns_size: Option<u16>,
    /// The question section as received, echoed in the answer.
    question: Vec<u8>,
}

/// Why a packet is not a query we answer: `Some(reply)` for what deserves an error reply, `None` to drop.
pub fn parse(packet: &[u8]) -> Result<Query, Option<Vec<u8>>> {
    if packet.len() < HEADER_LEN {
        return Err(None);
    }
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    let flags = u16::from_be_bytes([packet[2], packet[3]]);
    if flags & 0x8000 != 0 {
        return Err(None); // A response: never answer those.
    }
    let error = |rcode: Rcode| Some(header_only(id, flags, rcode));
    let opcode = (flags >> 11) & 0xf;
    if opcode != 0 {
        return Err(error(Rcode::NotImp));
    }
    let count = |at: usize| u16::from_be_bytes([packet[at], packet[at + 1]]);
    if count(4) != 1 {
        return Err(error(Rcode::FormErr));
    }
    let (name, end) = read_name(packet, HEADER_LEN).ok_or_else(|| error(Rcode::FormErr))?;
    if packet.len() < end + 4 {
        return Err(error(Rcode::FormErr));
    }
    let qtype = u16::from_be_bytes([packet[end], packet[end + 1]]);
    let qclass = u16::from_be_bytes([packet[end + 2], packet[end + 3]]);
    let question = packet[HEADER_LEN..end + 4].to_vec();
    // Look for an OPT record among the other sections (answer and authority are empty in queries).
    let mut edns_size = None;
    let mut at = end + 4;
    let others = usize::from(count(6)) + usize::from(count(8)) + usize::from(count(10));
    for _ in 0..others {
        let Some((_, after_name)) = read_name(packet, at) else {
            break;
        };
        if packet.len() < after_name + 10 {
            break;
        }
        let rtype = u16::from_be_bytes([packet[after_name], packet[after_name + 1]]);
        let rclass = u16::from_be_bytes([packet[after_name + 2], packet[after_name + 3]]);
        let rdlength = usize::from(u16::from_be_bytes([packet[after_name + 8], packet[after_name + 9]]));
        if rtype == TYPE_OPT {
            edns_size = Some(rclass);
        }
        at = after_name + 10 + rdlength;
    }
    Ok(Query {
        id,
        recursion_desired: flags & 0x0100 != 0,
        name,
        qtype,
        qclass,
        edns_size,
        question,
    })
}

/// Reads a (possibly compressed) name at `at`: the name and the offset just after it.
fn read_name(packet: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut labels: Vec<String> = Vec::new();
    let mut end = None;
    let mut jumps = 0;
    loop {
        let length = *packet.get(at)?;
        match length {
            0 => {
                let end = end.unwrap_or(at + 1);
                return Some((labels.join("."), end));
            }
            l if l & 0xc0 == 0xc0 => {
                let pointer = usize::from(u16::from_be_bytes([l & 0x3f, *packet.get(at + 1)?]));
                end.get_or_insert(at + 2);
                jumps += 1;
                if jumps > 16 {
                    return None;
                }
                at = pointer;
            }
            l if l & 0xc0 == 0 => {
                let label = packet.get(at + 1..at + 1 + usize::from(l))?;
                labels.push(String::from_utf8_lossy(label).into_owned());
                at += 1 + usize::from(l);
            }
            _ => return None,
        }
    }
}

/// A reply with only the header (FORMERR, NOTIMP): the query's id, opcode and RD echoed.
fn header_only(id: u16, flags: u16, rcode: Rcode) -> Vec<u8> {
    let flags = 0x8000 | (flags & 0x7900) | 0x0080 | rcode as u16;
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    out
}

fn write_name(out: &mut Vec<u8>, name: &str) {
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        let bytes = &label.as_bytes()[..label.len().min(63)];
        out.push(bytes.len() as u8);
        out.extend_from_slice(bytes);
    }
    out.push(0);
}

fn write_record(out: &mut Vec<u8>, record: &Record) {
    match &record.name {
        // A pointer to the question's name, right after the header.
        None => out.extend_from_slice(&[0xc0, HEADER_LEN as u8]),
        Some(name) => write_name(out, name),
    }
    out.extend_from_slice(&record.data.type_code().to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&record.ttl.to_be_bytes());
    let mut rdata = Vec::new();
    match &record.data {
        Data::A(ip) => rdata.extend_from_slice(&ip.octets()),
        Data::Srv {
            priority,
            weight,
            port,
            target,
        } => {
            rdata.extend_from_slice(&priority.to_be_bytes());
            rdata.extend_from_slice(&weight.to_be_bytes());
            rdata.extend_from_slice(&port.to_be_bytes());
            write_name(&mut rdata, target);
        }
        Data::Soa {
            mname,
            rname,
            serial,
            refresh,
            retry,
            expire,
            minimum,
        } => {
            write_name(&mut rdata, mname);
            write_name(&mut rdata, rname);
            for value in [serial, refresh, retry, expire, minimum] {
                rdata.extend_from_slice(&value.to_be_bytes());
            }
        }
    }
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(&rdata);
}

/// The reply to `query`. Over UDP (`udp` true) an answer larger than the client accepts is cut to the header
/// and question with TC set, so the client retries over TCP.
pub fn reply(query: &Query, answer: &Answer, udp: bool) -> Vec<u8> {
    let encode = |truncated: bool| {
        let (answers, authority, additional): (&[Record], &[Record], &[Record]) = if truncated {
            (&[], &[], &[])
        } else {
            (&answer.answers, &answer.authority, &answer.additional)
        };
        let mut flags = 0x8000u16 | 0x0080; // QR, RA (CoreDNS advertises recursion: it forwards).
        if answer.authoritative {
            flags |= 0x0400;
        }
        if truncated {
            flags |= 0x0200;
        }
        if query.recursion_desired {
            flags |= 0x0100;
        }
        flags |= answer.rcode as u16;
        let opt = u16::from(query.edns_size.is_some());
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(&query.id.to_be_bytes());
        out.extend_from_slice(&flags.to_be_bytes());
        for count in [
            1,
            answers.len() as u16,
            authority.len() as u16,
            additional.len() as u16 + opt,
        ] {
            out.extend_from_slice(&count.to_be_bytes());
        }
        out.extend_from_slice(&query.question);
        for record in answers.iter().chain(authority).chain(additional) {
            write_record(&mut out, record);
        }
        if opt == 1 {
            // OPT: root name, our UDP size, no extended rcode or flags, no options.
            out.push(0);
            out.extend_from_slice(&TYPE_OPT.to_be_bytes());
            out.extend_from_slice(&(MAX_UDP as u16).to_be_bytes());
            out.extend_from_slice(&[0; 6]);
        }
        out
    };
    let full = encode(false);
    let limit = match query.edns_size {
        Some(size) => usize::from(size).clamp(512, MAX_UDP),
        None => 512,
    };
    if udp && full.len() > limit { encode(true) } else { full }
}

#[cfg(test)]
mod tests {
    use super::super::records::{Cluster, TYPE_A, TYPE_SRV};
    use super::*;

    /// A query as `dig` sends it: RD set, one question, an OPT record advertising 1232 bytes.
    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut out = vec![0x12, 0x34, 0x01, 0x20, 0, 1, 0, 0, 0, 0, 0, 1];
        write_name(&mut out, name);
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        out
    }

    #[test]
    fn a_query_is_parsed_with_its_edns_size() {
        let parsed = parse(&query("Mysql-0.mysql-headless", TYPE_A)).expect("a query");
        assert_eq!(parsed.id, 0x1234);
        assert_eq!(parsed.name, "Mysql-0.mysql-headless");
        assert_eq!((parsed.qtype, parsed.qclass), (TYPE_A, CLASS_IN));
        assert_eq!(parsed.edns_size, Some(1232));
        assert!(parsed.recursion_desired);
    }

    #[test]
    fn an_a_answer_points_at_the_question_and_carries_the_address() {
        let cluster = Cluster::from_objects(
            &[],
            &[serde_json::json!({ "metadata": { "namespace": "db", "name": "web" },
                                  "spec": { "clusterIP": "10.96.0.20", "ports": [{ "port": 80 }] } })],
            &[],
        );
        let q = parse(&query("web.db.svc.cluster.local", TYPE_A)).expect("query");
        let out = reply(&q, &cluster.answer(&q.name, q.qtype), true);
        // id, flags QR|AA|RD|RA and NOERROR, 1 question, 1 answer, 0 authority, 1 additional (OPT).
        assert_eq!(&out[..12], &[0x12, 0x34, 0x85, 0x80, 0, 1, 0, 1, 0, 0, 0, 1]);
        let answer_at = 12 + q.question.len();
        assert_eq!(
            &out[answer_at..answer_at + 16],
            &[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 96, 0, 20]
        );
        assert_eq!(&out[answer_at + 16..], &[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn refusals_and_bad_packets_get_the_right_codes() {
        let q = parse(&query("example.com", TYPE_A)).expect("query");
        let out = reply(&q, &Answer::refused(), true);
        assert_eq!(out[3] & 0x0f, Rcode::Refused as u8);
        assert_eq!(out[2] & 0x04, 0, "not authoritative outside the cluster domain");
        // Two questions: FORMERR; an update (opcode 5): NOTIMP; a response or a runt: dropped.
        let mut two = query("a", TYPE_A);
        two[5] = 2;
        assert_eq!(parse(&two).expect_err("formerr").expect("reply")[3] & 0x0f, 1);
        let mut update = query("a", TYPE_A);
        update[2] = 0x28;
        assert_eq!(parse(&update).expect_err("notimp").expect("reply")[3] & 0x0f, 4);
        let mut response = query("a", TYPE_A);
        response[2] |= 0x80;
        assert_eq!(parse(&response), Err(None));
        assert_eq!(parse(&[0; 5]), Err(None));
    }

    #[test]
    fn compressed_names_are_followed_and_loops_refused() {
        let mut packet = vec![0; 12];
        packet.extend_from_slice(&[3, b'w', b'e', b'b', 0xc0, 20, 0, 0]);
        packet.extend_from_slice(&[2, b'd', b'b', 0]);
        assert_eq!(read_name(&packet, 12), Some(("web.db".to_string(), 18)));
        let looping = [0xc0, 0];
        assert_eq!(read_name(&looping, 0), None);
    }

    #[test]
    fn udp_answers_too_large_for_the_client_are_truncated() {
        let addresses: Vec<serde_json::Value> = (1..=120)
            .map(|i| serde_json::json!({ "ip": format!("10.244.0.{i}") }))
            .collect();
        let cluster = Cluster::from_objects(
            &[],
            &[serde_json::json!({ "metadata": { "namespace": "db", "name": "big" },
                                  "spec": { "clusterIP": "None", "ports": [{ "name": "p", "port": 80 }] } })],
            &[serde_json::json!({ "metadata": { "namespace": "db", "name": "big" },
                                  "subsets": [{ "addresses": addresses, "ports": [{ "name": "p", "port": 80 }] }] })],
        );
        let q = parse(&query("_p._tcp.big.db.svc.cluster.local", TYPE_SRV)).expect("query");
        let answer = cluster.answer(&q.name, q.qtype);
        let udp = reply(&q, &answer, true);
        assert_eq!(udp[2] & 0x02, 0x02, "TC set");
        assert_eq!(&udp[6..8], &[0, 0], "no answers");
        let tcp = reply(&q, &answer, false);
        assert_eq!(&tcp[6..8], &[0, 120]);
    }
}
