use qasid::limits::BundleLimits;
fn main() {
    let dir = std::env::args().nth(1).unwrap();
    let (mut n, mut raw, mut fixed) = (0, 0, 0);
    let mut errs = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let Ok(data) = std::fs::read(e.unwrap().path()) else { continue };
        n += 1;
        if qasid::bundle::verify_reader(&data[..], qasid_fuzz::public_key(), &BundleLimits::default()).is_ok() { raw += 1; }
        let f = qasid_fuzz::fixup_bundle(&data);
        match qasid::bundle::verify_reader(&f[..], qasid_fuzz::public_key(), &BundleLimits::default()) {
            Ok(_) => fixed += 1,
            Err(e) => { let s = format!("{e:?}"); let k = s.split(['(', ' ', '{']).next().unwrap().to_owned(); *errs.entry(k).or_insert(0) += 1; }
        }
    }
    println!("{n} inputs, raw accepted {raw}, fixed accepted {fixed}");
    println!("{errs:#?}");
}
