//! ISO 8601 durations as ARM writes entity settings (`PT30S`, `P14D`, `PT1H30M`, `P10675199DT2H48M5.4775807S`).

use std::time::Duration;

/// Parses `P[nD][T[nH][nM][n[.f]S]]` (weeks, months and years are not used by Service Bus entity settings).
pub fn parse(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid ISO 8601 duration {text:?}");
    let rest = text.strip_prefix('P').ok_or_else(bad)?;
    let (date_part, time_part) = match rest.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (rest, None),
    };
    let mut seconds = 0f64;
    let mut any = false;
    for (part, units) in
        [(date_part, &[('D', 86_400f64)][..]), (time_part.unwrap_or(""), &[('H', 3600.0), ('M', 60.0), ('S', 1.0)][..])]
    {
        let mut number = String::new();
        let mut next_unit = 0;
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                number.push(c);
                continue;
            }
            let position = units[next_unit..].iter().position(|(unit, _)| *unit == c).ok_or_else(bad)?;
            let value: f64 = number.parse().map_err(|_| bad())?;
            seconds += value * units[next_unit + position].1;
            next_unit += position + 1;
            number.clear();
            any = true;
        }
        if !number.is_empty() {
            return Err(bad());
        }
    }
    if !any || time_part == Some("") {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entity_settings() {
        assert_eq!(parse("PT30S").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("PT1M").unwrap(), Duration::from_secs(60));
        assert_eq!(parse("P14D").unwrap(), Duration::from_secs(14 * 86_400));
        assert_eq!(parse("P1DT1H30M0.5S").unwrap(), Duration::from_secs_f64(86_400.0 + 5_400.0 + 0.5));
        assert!(parse("P10675199DT2H48M5.4775807S").unwrap() > Duration::from_secs(900_000_000_000));
    }

    #[test]
    fn rejects_garbage() {
        for text in ["", "P", "PT", "30S", "PT5X", "PT1S2", "PTM1"] {
            assert!(parse(text).is_err(), "{text}");
        }
    }
}
