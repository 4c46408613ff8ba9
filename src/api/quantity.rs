//! Resource quantities (`100m`, `0.5`, `128Mi`, `1G`, `1e3`), parsed and printed
//! exactly as Kubernetes' `resource.Quantity` does, because operators compare
//! what flotilla prints with what `kubectl` would print.
//!
//! A quantity is held exactly, as an integer count of nano-units plus the format
//! it was written in (decimal SI, binary SI or decimal exponent). Like Kubernetes,
//! a quantity parsed from text that is already canonical keeps that text and
//! prints it back unchanged (`1e3` stays `1e3`, `05` stays `05`); any other
//! quantity prints in canonical form (`1.5` → `1500m`, `1000` → `1k`,
//! `0.5Gi` → `512Mi`).
//!
//! One deliberate difference: Kubernetes keeps decimal quantities of any size,
//! flotilla refuses magnitudes above 2^63-1 units (Kubernetes' own cap for binary
//! quantities). No cpu or memory amount comes near it, and the bound keeps every
//! value in an `i128` and every canonical suffix within `n`..`E`.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const NANOS_PER_UNIT: i128 = 1_000_000_000;
/// Kubernetes' `maxAllowed`: the largest magnitude, in units.
const MAX_UNITS: i128 = i64::MAX as i128;
const MAX_NANOS: i128 = MAX_UNITS * NANOS_PER_UNIT;

/// How a quantity is written, and so how it prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantityFormat {
    /// `12M`, `100m`: powers of 1000.
    DecimalSI,
    /// `12Mi`: powers of 1024.
    BinarySI,
    /// `12e6`.
    DecimalExponent,
}

/// Why a quantity does not parse. The first three messages are Kubernetes' own.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    FormatWrong,
    #[error("unable to parse quantity's suffix")]
    Suffix,
    #[error("unable to parse numeric part of quantity")]
    Numeric,
    #[error("quantity is too large: flotilla accepts magnitudes up to 9223372036854775807")]
    TooLarge,
}

/// An exact resource quantity. Equality and ordering compare values only
/// (`1000m == 1`), as Kubernetes' `Cmp` does.
#[derive(Clone, Debug)]
pub struct Quantity {
    nanos: i128,
    format: QuantityFormat,
    /// The text it was parsed from, when Kubernetes would print that text back
    /// (its `Quantity.s`).
    text: Option<Box<str>>,
}

impl Quantity {
    /// Parses a quantity as `resource.ParseQuantity` does (no surrounding spaces).
    pub fn parse(s: &str) -> Result<Self, QuantityError> {
        parse(s)
    }

    /// The zero quantity.
    pub fn zero() -> Self {
        Self::from_nanos_unchecked(0, QuantityFormat::DecimalSI)
    }

    /// `value` whole units, e.g. bytes or cores.
    pub fn from_value(value: i64, format: QuantityFormat) -> Self {
        Self::from_nanos_unchecked(i128::from(value) * NANOS_PER_UNIT, format)
    }

    /// `millis` thousandths of a unit, e.g. millicores.
    pub fn from_millis(millis: i64) -> Self {
        Self::from_nanos_unchecked(i128::from(millis) * 1_000_000, QuantityFormat::DecimalSI)
    }

    /// A quantity of `nanos` billionths of a unit, if within range.
    pub fn from_nanos(nanos: i128, format: QuantityFormat) -> Result<Self, QuantityError> {
        if nanos.abs() > MAX_NANOS {
            return Err(QuantityError::TooLarge);
        }
        Ok(Self::from_nanos_unchecked(nanos, format))
    }

    fn from_nanos_unchecked(nanos: i128, format: QuantityFormat) -> Self {
        Self {
            nanos,
            format,
            text: None,
        }
    }

    /// The exact value in billionths of a unit.
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    /// The value in whole units, rounded away from zero (Kubernetes' `Value()`).
    pub fn value(&self) -> i64 {
        saturate(div_away_from_zero(self.nanos, NANOS_PER_UNIT))
    }

    /// The value in thousandths, rounded away from zero (Kubernetes' `MilliValue()`),
    /// saturating at the bounds of `i64`.
    pub fn millis(&self) -> i64 {
        saturate(div_away_from_zero(self.nanos, 1_000_000))
    }

    pub fn format(&self) -> QuantityFormat {
        self.format
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// Whether the value is a whole number of units (memory should be whole bytes).
    pub fn is_whole(&self) -> bool {
        self.nanos % NANOS_PER_UNIT == 0
    }

    /// The sum, in the format of `self` (or of `other` when `self` is zero, as
    /// Kubernetes' `Add` does); `None` if out of range.
    pub fn checked_add(&self, other: &Quantity) -> Option<Quantity> {
        let format = if self.is_zero() {
            other.format
        } else {
            self.format
        };
        Self::from_nanos(self.nanos.checked_add(other.nanos)?, format).ok()
    }

    /// The difference, formatted like `checked_add`.
    pub fn checked_sub(&self, other: &Quantity) -> Option<Quantity> {
        let format = if self.is_zero() {
            other.format
        } else {
            self.format
        };
        Self::from_nanos(self.nanos.checked_sub(other.nanos)?, format).ok()
    }

    /// The canonical text, ignoring any text the quantity was parsed from
    /// (Kubernetes' `CanonicalizeBytes`).
    pub fn canonical(&self) -> String {
        canonical(self.nanos, self.format)
    }
}

impl fmt::Display for Quantity {
    /// Kubernetes' `Quantity.String()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.text {
            Some(text) => f.write_str(text),
            None => f.write_str(&self.canonical()),
        }
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl Hash for Quantity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.nanos.hash(state);
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(QuantityVisitor)
    }
}

struct QuantityVisitor;

impl Visitor<'_> for QuantityVisitor {
    type Value = Quantity;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a quantity such as \"100m\", \"0.5\" or \"128Mi\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
        // Kubernetes' UnmarshalJSON trims surrounding spaces before parsing.
        parse(v.trim()).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
        parse(&v.to_string()).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
        parse(&v.to_string()).map_err(E::custom)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
        parse(&number_text(v)).map_err(E::custom)
    }
}

/// The text of a number given as a YAML or JSON number rather than a string.
/// Kubernetes converts YAML to JSON first, which writes a float the way Go's
/// `encoding/json` does: plain decimal, or an exponent below 1e-6 and from 1e21.
pub fn number_text(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-6..1e21).contains(&a) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// The pieces of a quantity string, as Kubernetes' `parseQuantityString` scans them.
struct Scanned<'a> {
    positive: bool,
    /// Integer digits without leading zeros ("0" if there were none).
    num: &'a str,
    /// Fraction digits.
    denom: &'a str,
    suffix: &'a str,
}

fn scan(s: &str) -> Result<Scanned<'_>, QuantityError> {
    let b = s.as_bytes();
    let end = b.len();
    let mut pos = 0;
    let mut positive = true;
    match b.first() {
        Some(b'-') => {
            positive = false;
            pos += 1;
        }
        Some(b'+') => pos += 1,
        _ => {}
    }
    let done = |num, denom, suffix| {
        Ok(Scanned {
            positive,
            num,
            denom,
            suffix,
        })
    };
    while pos < end && b[pos] == b'0' {
        pos += 1;
    }
    if pos >= end {
        return done("0", "", "");
    }
    let start = pos;
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos >= end {
        return done(&s[start..end], "", "");
    }
    let num = if pos == start { "0" } else { &s[start..pos] };
    let mut denom = "";
    if b[pos] == b'.' {
        pos += 1;
        let denom_start = pos;
        while pos < end && b[pos].is_ascii_digit() {
            pos += 1;
        }
        denom = &s[denom_start..pos];
        if pos >= end {
            return done(num, denom, "");
        }
    }
    let suffix_start = pos;
    while pos < end && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < end && (b[pos] == b'-' || b[pos] == b'+') {
        pos += 1;
    }
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos >= end {
        return done(num, denom, &s[suffix_start..end]);
    }
    Err(QuantityError::FormatWrong)
}

/// A suffix's base (10 or 2), exponent and format, as Kubernetes' suffixer reads it.
fn interpret(suffix: &str) -> Result<(u32, i64, QuantityFormat), QuantityError> {
    use QuantityFormat::*;
    let found = match suffix {
        "n" => (10, -9, DecimalSI),
        "u" => (10, -6, DecimalSI),
        "m" => (10, -3, DecimalSI),
        "" => (10, 0, DecimalSI),
        "k" => (10, 3, DecimalSI),
        "M" => (10, 6, DecimalSI),
        "G" => (10, 9, DecimalSI),
        "T" => (10, 12, DecimalSI),
        "P" => (10, 15, DecimalSI),
        "E" => (10, 18, DecimalSI),
        "Ki" => (2, 10, BinarySI),
        "Mi" => (2, 20, BinarySI),
        "Gi" => (2, 30, BinarySI),
        "Ti" => (2, 40, BinarySI),
        "Pi" => (2, 50, BinarySI),
        "Ei" => (2, 60, BinarySI),
        _ => {
            let rest = suffix
                .strip_prefix('e')
                .or_else(|| suffix.strip_prefix('E'))
                .filter(|rest| !rest.is_empty())
                .ok_or(QuantityError::Suffix)?;
            let exponent: i64 = rest.parse().map_err(|_| QuantityError::Suffix)?;
            // Kubernetes truncates the exponent to 32 bits; anything that large is
            // out of flotilla's range whichever way it is read.
            if i32::try_from(exponent).is_err() {
                return Err(QuantityError::TooLarge);
            }
            (10, exponent, DecimalExponent)
        }
    };
    Ok(found)
}

fn parse(s: &str) -> Result<Quantity, QuantityError> {
    if s.is_empty() {
        return Err(QuantityError::FormatWrong);
    }
    if s == "0" {
        return Ok(Quantity {
            nanos: 0,
            format: QuantityFormat::DecimalSI,
            text: Some(s.into()),
        });
    }
    let Scanned {
        positive,
        num,
        denom,
        suffix,
    } = scan(s)?;
    let (base, exponent, format) = interpret(suffix)?;
    if let Some(q) = parse_fast(s, positive, num, denom, base, exponent, format)? {
        return Ok(q);
    }
    parse_exact(positive, num, denom, base, exponent, format)
}

/// Kubernetes' int64 fast path. It decides which texts are kept as written, so
/// its conditions are reproduced exactly; `None` means Kubernetes would take the
/// arbitrary-precision path instead.
fn parse_fast(
    s: &str,
    positive: bool,
    num: &str,
    denom: &str,
    base: u32,
    exponent: i64,
    format: QuantityFormat,
) -> Result<Option<Quantity>, QuantityError> {
    let digits = (num.len() + denom.len()) as i64;
    let (precision, mut scale, shift) = if base == 10 {
        (18 - digits, exponent, 0)
    } else if denom.is_empty() {
        (15 - num.len() as i64 - exponent * 3 / 10 - 1, 0, exponent)
    } else {
        (-1, 0, 0)
    };
    if precision < 0 {
        return Ok(None);
    }
    scale -= denom.len() as i64;
    if scale < -9 {
        return Ok(None);
    }
    let shifted = format!("{num}{denom}");
    let value: i64 = shifted.parse().map_err(|_| QuantityError::Numeric)?;
    let Some(mut result) = value.checked_mul(1i64 << shift) else {
        return Ok(None);
    };
    if !positive {
        result = -result;
    }
    let keeps_text = match format {
        QuantityFormat::BinarySI => exponent % 10 == 0 && value & 0x07 != 0,
        _ => scale % 3 == 0 && !shifted.ends_with("000") && !shifted.starts_with('0'),
    };
    let nanos = u32::try_from(scale + 9)
        .ok()
        .and_then(|p| 10i128.checked_pow(p))
        .and_then(|m| i128::from(result).checked_mul(m))
        .filter(|n| n.abs() <= MAX_NANOS)
        .ok_or(QuantityError::TooLarge)?;
    Ok(Some(Quantity {
        nanos,
        format,
        text: keeps_text.then(|| s.into()),
    }))
}

/// Kubernetes' `inf.Dec` path: exact arithmetic, then rounded up (away from zero)
/// to a whole nano-unit; binary quantities are capped at 2^63-1 units.
fn parse_exact(
    positive: bool,
    num: &str,
    denom: &str,
    base: u32,
    exponent: i64,
    mut format: QuantityFormat,
) -> Result<Quantity, QuantityError> {
    let mut digits: Vec<u8> = num
        .bytes()
        .chain(denom.bytes())
        .map(|b| b - b'0')
        .skip_while(|&d| d == 0)
        .collect();
    if digits.is_empty() {
        return Ok(Quantity::from_nanos_unchecked(0, format));
    }
    let mut scale = 9 - denom.len() as i64;
    if base == 2 {
        multiply_by_power_of_two(&mut digits, exponent);
    } else {
        scale += exponent;
    }
    let magnitude = match scaled_ceil(&digits, scale) {
        Some(n) if n <= MAX_NANOS => n,
        _ if format == QuantityFormat::BinarySI => MAX_NANOS,
        _ => return Err(QuantityError::TooLarge),
    };
    if format == QuantityFormat::BinarySI && magnitude < NANOS_PER_UNIT {
        format = QuantityFormat::DecimalSI;
    }
    let nanos = if positive { magnitude } else { -magnitude };
    Ok(Quantity::from_nanos_unchecked(nanos, format))
}

/// Multiplies a big-endian decimal digit string by 2^exp in place.
fn multiply_by_power_of_two(digits: &mut Vec<u8>, exp: i64) {
    let mut left = exp;
    while left > 0 {
        let step = left.min(20);
        left -= step;
        let factor = 1u64 << step;
        let mut carry = 0u64;
        for d in digits.iter_mut().rev() {
            let v = u64::from(*d) * factor + carry;
            *d = (v % 10) as u8;
            carry = v / 10;
        }
        let mut head = Vec::new();
        while carry > 0 {
            head.push((carry % 10) as u8);
            carry /= 10;
        }
        head.reverse();
        head.append(digits);
        *digits = head;
    }
}

/// ceil(digits × 10^scale) for a positive digit string, or `None` when it is
/// beyond every magnitude flotilla accepts.
fn scaled_ceil(digits: &[u8], scale: i64) -> Option<i128> {
    // 30 digits is past MAX_NANOS (28 digits) yet well inside i128 (38 digits).
    const ENOUGH: usize = 30;
    let to_int = |ds: &[u8]| ds.iter().fold(0i128, |v, &d| v * 10 + i128::from(d));
    if scale >= 0 {
        if digits.len() as i64 + scale > ENOUGH as i64 {
            return None;
        }
        let v = to_int(digits);
        return 10i128
            .checked_pow(scale as u32)
            .and_then(|m| v.checked_mul(m));
    }
    let cut = usize::try_from(scale.unsigned_abs()).unwrap_or(usize::MAX);
    if cut >= digits.len() {
        // Less than one nano-unit but not zero: the smallest amount there is.
        return Some(1);
    }
    let (head, tail) = digits.split_at(digits.len() - cut);
    if head.len() > ENOUGH {
        return None;
    }
    let rounded_up = tail.iter().any(|&d| d != 0);
    Some(to_int(head) + i128::from(rounded_up))
}

fn canonical(nanos: i128, format: QuantityFormat) -> String {
    if nanos == 0 {
        return "0".to_owned();
    }
    let mut format = format;
    if format == QuantityFormat::BinarySI
        && (nanos.abs() < 1024 * NANOS_PER_UNIT || nanos % NANOS_PER_UNIT != 0)
    {
        // Small or fractional binary amounts print in decimal rather than round.
        format = QuantityFormat::DecimalSI;
    }
    if format == QuantityFormat::BinarySI {
        let mut v = nanos / NANOS_PER_UNIT;
        let mut times = 0;
        while v.abs() >= 1024 && v % 1024 == 0 {
            v /= 1024;
            times += 1;
        }
        let suffix = match times {
            1 => "Ki",
            2 => "Mi",
            3 => "Gi",
            4 => "Ti",
            5 => "Pi",
            6 => "Ei",
            _ => "",
        };
        return format!("{v}{suffix}");
    }
    let mut mantissa = nanos;
    let mut exponent: i32 = -9;
    while mantissa.abs() >= 10 && mantissa % 10 == 0 {
        mantissa /= 10;
        exponent += 1;
    }
    while exponent % 3 != 0 {
        mantissa *= 10;
        exponent -= 1;
    }
    let suffix = match format {
        QuantityFormat::DecimalExponent if exponent == 0 => String::new(),
        QuantityFormat::DecimalExponent => format!("e{exponent}"),
        _ => match exponent {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            18 => "E",
            _ => "",
        }
        .to_owned(),
    };
    format!("{mantissa}{suffix}")
}

fn div_away_from_zero(n: i128, d: i128) -> i128 {
    let q = n / d;
    if n % d == 0 {
        q
    } else if n > 0 {
        q + 1
    } else {
        q - 1
    }
}

fn saturate(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(s: &str) -> Quantity {
        match Quantity::parse(s) {
            Ok(q) => q,
            Err(e) => panic!("{s:?} does not parse: {e}"),
        }
    }

    /// Inputs and what Kubernetes' `ParseQuantity(s).String()` gives, with the value
    /// in nano-units. Taken from apimachinery's quantity tests and checked by hand
    /// against its algorithm.
    const KNOWN: &[(&str, &str, i128)] = &[
        ("0", "0", 0),
        ("0n", "0", 0),
        ("0u", "0", 0),
        ("0m", "0", 0),
        ("0Ki", "0", 0),
        ("0Mi", "0", 0),
        ("0k", "0", 0),
        ("-0", "0", 0),
        ("1n", "1n", 1),
        ("1u", "1u", 1_000),
        ("1m", "1m", 1_000_000),
        ("100m", "100m", 100_000_000),
        ("0.1", "100m", 100_000_000),
        (".1", "100m", 100_000_000),
        ("0.5", "500m", 500_000_000),
        ("1.5", "1500m", 1_500_000_000),
        ("1000m", "1", 1_000_000_000),
        ("1", "1", 1_000_000_000),
        ("05", "05", 5_000_000_000),
        ("+1", "+1", 1_000_000_000),
        ("1.", "1.", 1_000_000_000),
        ("1.0", "1", 1_000_000_000),
        ("1.000", "1", 1_000_000_000),
        ("1000", "1k", 1_000_000_000_000),
        ("1500", "1500", 1_500_000_000_000),
        ("1k", "1k", 1_000_000_000_000),
        ("1000k", "1M", 1_000_000_000_000_000),
        ("1M", "1M", 1_000_000_000_000_000),
        ("1G", "1G", 1_000_000_000_000_000_000),
        ("1T", "1T", 1_000_000_000_000_000_000_000),
        ("1P", "1P", 1_000_000_000_000_000_000_000_000),
        ("1E", "1E", 1_000_000_000_000_000_000_000_000_000),
        ("-1", "-1", -1_000_000_000),
        ("-1000", "-1k", -1_000_000_000_000),
        ("-0.5", "-500m", -500_000_000),
        ("-100m", "-100m", -100_000_000),
        ("1Ki", "1Ki", 1_024_000_000_000),
        ("1024", "1024", 1_024_000_000_000),
        ("1023Ki", "1023Ki", 1_047_552_000_000_000),
        ("1024Ki", "1Mi", 1_048_576_000_000_000),
        ("2048Ki", "2Mi", 2_097_152_000_000_000),
        ("1Mi", "1Mi", 1_048_576_000_000_000),
        ("128Mi", "128Mi", 134_217_728_000_000_000),
        ("1536Mi", "1536Mi", 1_610_612_736_000_000_000),
        ("1024Mi", "1Gi", 1_073_741_824_000_000_000),
        ("0.5Gi", "512Mi", 536_870_912_000_000_000),
        ("1.5Gi", "1536Mi", 1_610_612_736_000_000_000),
        ("1.5Mi", "1536Ki", 1_572_864_000_000_000),
        ("0.5Ki", "512", 512_000_000_000),
        ("1.1Ki", "1126400m", 1_126_400_000_000),
        ("1Ei", "1Ei", 1_152_921_504_606_846_976_000_000_000),
        ("8Ei", "9223372036854775807", MAX_NANOS),
        ("1e3", "1e3", 1_000_000_000_000),
        ("1E6", "1E6", 1_000_000_000_000_000),
        ("10e3", "10e3", 10_000_000_000_000),
        ("1000e3", "1e6", 1_000_000_000_000_000),
        ("1.5e3", "1500", 1_500_000_000_000),
        ("1e-3", "1e-3", 1_000_000),
        ("1.5e-3", "1500e-6", 1_500_000),
        ("0.0000000001", "1n", 1),
        ("-0.0000000001", "-1n", -1),
        ("1.0000000001", "1000000001n", 1_000_000_001),
        ("0.1n", "1n", 1),
        ("9223372036854775807", "9223372036854775807", MAX_NANOS),
        // Quirks of Kubernetes' scanner, reproduced on purpose.
        ("-", "0", 0),
        ("Mi", "0", 0),
        (".", "0", 0),
    ];

    #[test]
    fn prints_what_kubernetes_prints() {
        for &(input, printed, nanos) in KNOWN {
            let parsed = q(input);
            assert_eq!(parsed.to_string(), printed, "String() of {input:?}");
            assert_eq!(parsed.nanos(), nanos, "value of {input:?}");
        }
    }

    #[test]
    fn refuses_what_kubernetes_refuses() {
        use QuantityError::*;
        for (input, err) in [
            ("", FormatWrong),
            ("1K", Suffix),
            ("1Ki2", Suffix),
            ("1e", Suffix),
            ("1KiB", FormatWrong),
            (" 1", FormatWrong),
            ("1 ", FormatWrong),
            ("abc", FormatWrong),
            ("1.2.3", FormatWrong),
            ("1e3e", FormatWrong),
            ("--1", Suffix),
            ("1mm", Suffix),
        ] {
            assert_eq!(Quantity::parse(input).err(), Some(err), "{input:?}");
        }
        // flotilla's own bound (see the module comment).
        assert_eq!(Quantity::parse("1e21").err(), Some(TooLarge));
        assert_eq!(
            Quantity::parse("12345678901234567890").err(),
            Some(TooLarge)
        );
        assert_eq!(Quantity::parse("1e99999999999").err(), Some(TooLarge));
    }

    #[test]
    fn value_helpers_round_away_from_zero() {
        assert_eq!(q("100m").millis(), 100);
        assert_eq!(q("0.5").millis(), 500);
        assert_eq!(q("1n").millis(), 1);
        assert_eq!(q("-1n").millis(), -1);
        assert_eq!(q("1.5").value(), 2);
        assert_eq!(q("-1.5").value(), -2);
        assert_eq!(q("128Mi").value(), 134_217_728);
        assert_eq!(q("8Ei").millis(), i64::MAX);
        assert_eq!(Quantity::from_millis(1500).to_string(), "1500m");
        assert_eq!(
            Quantity::from_value(1 << 30, QuantityFormat::BinarySI).to_string(),
            "1Gi"
        );
        assert!(!q("100m").is_negative() && q("-1").is_negative());
        assert!(!q("100m").is_whole() && q("1k").is_whole());
    }

    #[test]
    fn compares_by_value() {
        assert_eq!(q("1000m"), q("1"));
        assert_eq!(q("1Ki"), q("1024"));
        assert!(q("500m") < q("1"));
        assert!(q("1Gi") > q("1G"));
        let sum = q("100m").checked_add(&q("1.5")).map(|s| s.to_string());
        assert_eq!(sum.as_deref(), Some("1600m"));
        let diff = q("1Gi").checked_sub(&q("512Mi")).map(|s| s.to_string());
        assert_eq!(diff.as_deref(), Some("512Mi"));
        assert_eq!(
            Quantity::zero().checked_add(&q("1Mi")).map(|s| s.format()),
            Some(QuantityFormat::BinarySI)
        );
    }

    #[test]
    fn serde_reads_strings_and_numbers_and_writes_strings() {
        let from = |v: serde_json::Value| -> String {
            match serde_json::from_value::<Quantity>(v) {
                Ok(q) => q.to_string(),
                Err(e) => format!("error: {e}"),
            }
        };
        assert_eq!(from(serde_json::json!("100m")), "100m");
        assert_eq!(from(serde_json::json!(" 1Gi ")), "1Gi");
        assert_eq!(from(serde_json::json!(2)), "2");
        assert_eq!(from(serde_json::json!(0.5)), "500m");
        assert_eq!(from(serde_json::json!(1000.0)), "1k");
        assert_eq!(from(serde_json::json!(1e-7)), "100e-9");
        assert!(from(serde_json::json!("1K")).starts_with("error: unable to parse"));
        assert!(from(serde_json::json!(true)).starts_with("error: invalid type"));
        let json = serde_json::to_string(&q("0.5Gi")).ok();
        assert_eq!(json.as_deref(), Some("\"512Mi\""));
    }

    /// Quantity strings from the grammar, including the corner cases of the scanner.
    fn quantity_text() -> impl Strategy<Value = String> {
        let sign = prop_oneof![Just(""), Just("-"), Just("+")];
        let int = "[0-9]{0,20}";
        let frac = prop_oneof![Just(String::new()), "\\.[0-9]{0,12}".prop_map(|s| s)];
        let suffix = prop_oneof![
            Just("".to_owned()),
            prop::sample::select(vec![
                "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
            ])
            .prop_map(str::to_owned),
            (prop_oneof![Just("e"), Just("E")], -15i32..15).prop_map(|(e, x)| format!("{e}{x}")),
        ];
        (sign, int, frac, suffix).prop_map(|(s, i, f, x)| format!("{s}{i}{f}{x}"))
    }

    fn any_format() -> impl Strategy<Value = QuantityFormat> {
        prop_oneof![
            Just(QuantityFormat::DecimalSI),
            Just(QuantityFormat::BinarySI),
            Just(QuantityFormat::DecimalExponent),
        ]
    }

    proptest! {
        #[test]
        fn print_parse_print_is_print(text in quantity_text()) {
            if let Ok(parsed) = Quantity::parse(&text) {
                let printed = parsed.to_string();
                let reparsed = Quantity::parse(&printed);
                prop_assert!(reparsed.is_ok(), "{} printed as {} which does not parse", text, printed);
                let reparsed = reparsed.unwrap_or_else(|_| Quantity::zero());
                prop_assert_eq!(reparsed.nanos(), parsed.nanos());
                prop_assert_eq!(reparsed.to_string(), printed);
            }
        }

        #[test]
        fn parse_print_is_identity_on_values(
            nanos in -MAX_NANOS..=MAX_NANOS,
            format in any_format(),
        ) {
            let value = Quantity::from_nanos(nanos, format);
            prop_assert!(value.is_ok());
            let value = value.unwrap_or_else(|_| Quantity::zero());
            let printed = value.to_string();
            let parsed = Quantity::parse(&printed);
            prop_assert!(parsed.is_ok(), "{} does not parse", printed);
            prop_assert_eq!(parsed.unwrap_or_else(|_| Quantity::zero()).nanos(), nanos);
        }

        #[test]
        fn whole_units_print_exactly(units in -(i64::MAX)..=i64::MAX, format in any_format()) {
            let value = Quantity::from_value(units, format);
            let parsed = Quantity::parse(&value.to_string());
            prop_assert_eq!(parsed.map(|p| p.value()).ok(), Some(units));
        }
    }
}
