//! Kubernetes resource quantities ("250m", "1.5", "64Mi", "1G") as the integers podgraft computes
//! with: milli-CPU and bytes. Rounds up, as the kubelet does (`MilliValue`, `Value`).

/// Parses a quantity into units × `scale` (1000 for milli-CPU, 1 for bytes), rounded up.
fn parse(text: &str, scale: f64) -> Option<i64> {
    let text = text.trim();
    let split = text
        .find(|c: char| {
            !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-' || c == 'e' || c == 'E')
        })
        .unwrap_or(text.len());
    // "1e3" is an exponent, but "1E" alone would be the exa suffix: try the longest number first.
    let (number, suffix) = match text[..split].parse::<f64>() {
        Ok(_) => text.split_at(split),
        Err(_) => {
            let cut = text.rfind(['e', 'E'])?;
            text.split_at(cut)
        }
    };
    let value: f64 = number.parse().ok()?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    let scaled = (value * multiplier * scale).ceil();
    if !scaled.is_finite() || scaled < 0.0 || scaled > i64::MAX as f64 {
        return None;
    }
    Some(scaled as i64)
}

/// CPU in millicores ("250m" → 250, "1.5" → 1500). `None` for malformed or negative input.
pub fn milli_cpu(text: &str) -> Option<i64> {
    parse(text, 1000.0)
}

/// Memory in bytes ("64Mi" → 67108864).
pub fn bytes(text: &str) -> Option<i64> {
    parse(text, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_quantities() {
        assert_eq!(milli_cpu("250m"), Some(250));
        assert_eq!(milli_cpu("1"), Some(1000));
        assert_eq!(milli_cpu("0.5"), Some(500));
        assert_eq!(milli_cpu("1.0001"), Some(1001), "rounds up");
        assert_eq!(bytes("64Mi"), Some(64 << 20));
        assert_eq!(bytes("1G"), Some(1_000_000_000));
        assert_eq!(bytes("1e3"), Some(1000));
        assert_eq!(bytes("2E"), Some(2_000_000_000_000_000_000));
        assert_eq!(bytes("128974848"), Some(128_974_848));
        for bad in ["", "abc", "-1", "1Zi", "1.2.3", "Mi"] {
            assert_eq!(bytes(bad), None, "{bad:?}");
        }
    }
}
