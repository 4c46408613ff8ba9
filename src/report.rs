//! How an error is shown to a person at a binary's edge: one line, the
//! error and what caused it.

/// The error and its causes on one line. Many of our errors already quote
/// their cause in their own message; a cause is only added when it says
/// something new.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut message = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !message.contains(&cause) {
            message.push_str(": ");
            message.push_str(&cause);
        }
    }
    message
}
