//! Subscription rule filters: the SQL-filter subset (parsed once, at load time) and correlation filters, evaluated
//! against a message with SQL's three-valued logic (a missing property makes a comparison unknown, and unknown never
//! matches).

use std::collections::BTreeMap;

use crate::scenario::CorrelationFilter;

use super::model::Message;

/// A parsed rule filter.
#[derive(Debug, Clone)]
pub enum Filter {
    Sql(Expr),
    Correlation(CorrelationFilter),
}

impl Filter {
    /// The `$Default` rule: `1=1`.
    pub fn match_all() -> Self {
        Self::Sql(Expr::Literal(Value::Bool(true)))
    }

    pub fn sql(text: &str) -> Result<Self, String> {
        Parser::new(text)?.parse().map(Self::Sql)
    }

    pub fn matches(&self, message: &Message) -> bool {
        match self {
            Self::Sql(expr) => expr.eval(&|ident| lookup(message, ident)).truth() == Some(true),
            Self::Correlation(filter) => correlation_matches(filter, message),
        }
    }
}

fn correlation_matches(filter: &CorrelationFilter, message: &Message) -> bool {
    let system = [
        (&filter.correlation_id, &message.correlation_id),
        (&filter.message_id, &message.message_id),
        (&filter.label, &message.label),
        (&filter.content_type, &message.content_type),
        (&filter.to, &message.to),
        (&filter.reply_to, &message.reply_to),
        (&filter.session_id, &message.session_id),
    ];
    let system_ok = system.iter().all(|(wanted, actual)| wanted.is_none() || wanted == actual);
    system_ok && filter.properties.iter().all(|(name, wanted)| {
        let actual = property(&message.application_properties, name).map(Value::from_json);
        matches!((actual, Value::from_json(wanted)), (Some(a), b) if a.compare(&b) == Some(std::cmp::Ordering::Equal))
    })
}

/// Application properties by name: exact first, then ignoring case.
fn property<'a>(properties: &'a BTreeMap<String, serde_json::Value>, name: &str) -> Option<&'a serde_json::Value> {
    properties
        .get(name)
        .or_else(|| properties.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value))
}

fn lookup(message: &Message, ident: &Ident) -> Option<Value> {
    let text = |value: &Option<String>| value.clone().map(Value::Str);
    match ident {
        Ident::User(name) => property(&message.application_properties, name).map(Value::from_json),
        Ident::Sys(SysProperty::Label) => text(&message.label),
        Ident::Sys(SysProperty::MessageId) => text(&message.message_id),
        Ident::Sys(SysProperty::CorrelationId) => text(&message.correlation_id),
        Ident::Sys(SysProperty::ContentType) => text(&message.content_type),
        Ident::Sys(SysProperty::To) => text(&message.to),
        Ident::Sys(SysProperty::ReplyTo) => text(&message.reply_to),
        Ident::Sys(SysProperty::SessionId) => text(&message.session_id),
        Ident::Sys(SysProperty::ReplyToSessionId) => text(&message.reply_to_session_id),
    }
}

/// A scalar in a filter: a literal or a property value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

impl Value {
    fn from_json(value: &serde_json::Value) -> Self {
        match value {
            serde_json::Value::String(text) => Self::Str(text.clone()),
            serde_json::Value::Number(number) => number.as_f64().map_or(Self::Null, Self::Num),
            serde_json::Value::Bool(flag) => Self::Bool(*flag),
            serde_json::Value::Null => Self::Null,
            other => Self::Str(other.to_string()),
        }
    }

    /// `None` when the two are not comparable (different types, or a NULL).
    fn compare(&self, other: &Self) -> Option<std::cmp::Ordering> {
        match (self, other) {
            (Self::Str(a), Self::Str(b)) => Some(a.cmp(b)),
            (Self::Num(a), Self::Num(b)) => a.partial_cmp(b),
            (Self::Bool(a), Self::Bool(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }

    fn truth(&self) -> Option<bool> {
        match self {
            Self::Bool(flag) => Some(*flag),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysProperty {
    Label,
    MessageId,
    CorrelationId,
    ContentType,
    To,
    ReplyTo,
    SessionId,
    ReplyToSessionId,
}

impl SysProperty {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "label" | "subject" => Self::Label,
            "messageid" => Self::MessageId,
            "correlationid" => Self::CorrelationId,
            "contenttype" => Self::ContentType,
            "to" => Self::To,
            "replyto" => Self::ReplyTo,
            "sessionid" => Self::SessionId,
            "replytosessionid" => Self::ReplyToSessionId,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Ident {
    Sys(SysProperty),
    User(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A parsed SQL filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(Value),
    Property(Ident),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Compare(Box<Expr>, CmpOp, Box<Expr>),
    In { operand: Box<Expr>, list: Vec<Value>, negated: bool },
    Like { operand: Box<Expr>, pattern: Vec<char>, escape: Option<char>, negated: bool },
    Exists(Ident),
    IsNull { operand: Box<Expr>, negated: bool },
}

impl Expr {
    /// Evaluates to a value; boolean operators use three-valued logic (`Null` is unknown).
    pub fn eval(&self, lookup: &dyn Fn(&Ident) -> Option<Value>) -> Value {
        let boolean = |truth: Option<bool>| truth.map_or(Value::Null, Value::Bool);
        match self {
            Self::Literal(value) => value.clone(),
            Self::Property(ident) => lookup(ident).unwrap_or(Value::Null),
            Self::Not(inner) => boolean(inner.eval(lookup).truth().map(|t| !t)),
            Self::And(a, b) => boolean(match (a.eval(lookup).truth(), b.eval(lookup).truth()) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            }),
            Self::Or(a, b) => boolean(match (a.eval(lookup).truth(), b.eval(lookup).truth()) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            }),
            Self::Compare(a, op, b) => boolean(a.eval(lookup).compare(&b.eval(lookup)).map(|ordering| {
                use std::cmp::Ordering::*;
                match op {
                    CmpOp::Eq => ordering == Equal,
                    CmpOp::Ne => ordering != Equal,
                    CmpOp::Lt => ordering == Less,
                    CmpOp::Le => ordering != Greater,
                    CmpOp::Gt => ordering == Greater,
                    CmpOp::Ge => ordering != Less,
                }
            })),
            Self::In { operand, list, negated } => {
                let value = operand.eval(lookup);
                if value == Value::Null {
                    return Value::Null;
                }
                let found = list.iter().any(|item| value.compare(item) == Some(std::cmp::Ordering::Equal));
                Value::Bool(found != *negated)
            }
            Self::Like { operand, pattern, escape, negated } => match operand.eval(lookup) {
                Value::Str(text) => {
                    let text: Vec<char> = text.chars().collect();
                    Value::Bool(like(&text, pattern, *escape) != *negated)
                }
                _ => Value::Null,
            },
            Self::Exists(ident) => Value::Bool(lookup(ident).is_some()),
            Self::IsNull { operand, negated } => Value::Bool((operand.eval(lookup) == Value::Null) != *negated),
        }
    }
}

impl Value {
    #[cfg(test)]
    fn is_true(&self) -> bool {
        self.truth() == Some(true)
    }
}

/// SQL `LIKE`: `%` is any run of characters, `_` exactly one; `escape` makes the next character literal.
fn like(text: &[char], pattern: &[char], escape: Option<char>) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((&c, rest)) if Some(c) == escape => match rest.split_first() {
            Some((&literal, rest)) => text.first() == Some(&literal) && like(&text[1..], rest, escape),
            None => false,
        },
        Some(('%', rest)) => (0..=text.len()).any(|skip| like(&text[skip..], rest, escape)),
        Some(('_', rest)) => !text.is_empty() && like(&text[1..], rest, escape),
        Some((&c, rest)) => text.first() == Some(&c) && like(&text[1..], rest, escape),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    /// `[quoted name]`: never a keyword.
    Quoted(String),
    Str(String),
    Num(f64),
    Op(CmpOp),
    LParen,
    RParen,
    Comma,
    Dot,
    Minus,
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' | ')' | ',' | '.' | '-' => {
                let is_number_dot = c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit);
                if is_number_dot {
                    let (number, next) = read_number(&chars, i)?;
                    tokens.push(Token::Num(number));
                    i = next;
                    continue;
                }
                tokens.push(match c {
                    '(' => Token::LParen,
                    ')' => Token::RParen,
                    ',' => Token::Comma,
                    '.' => Token::Dot,
                    _ => Token::Minus,
                });
                i += 1;
            }
            '=' => {
                tokens.push(Token::Op(CmpOp::Eq));
                i += 1;
            }
            '<' | '>' | '!' => {
                let next = chars.get(i + 1).copied();
                let (op, width) = match (c, next) {
                    ('<', Some('>')) => (CmpOp::Ne, 2),
                    ('<', Some('=')) => (CmpOp::Le, 2),
                    ('>', Some('=')) => (CmpOp::Ge, 2),
                    ('!', Some('=')) => (CmpOp::Ne, 2),
                    ('<', _) => (CmpOp::Lt, 1),
                    ('>', _) => (CmpOp::Gt, 1),
                    _ => return Err(format!("unexpected '!' at position {i}")),
                };
                tokens.push(Token::Op(op));
                i += width;
            }
            '\'' => {
                let mut value = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated string literal".into()),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            value.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&other) => {
                            value.push(other);
                            i += 1;
                        }
                    }
                }
                tokens.push(Token::Str(value));
            }
            '[' => {
                let end = chars[i..].iter().position(|&c| c == ']').ok_or("unterminated [identifier]")?;
                tokens.push(Token::Quoted(chars[i + 1..i + end].iter().collect()));
                i += end + 1;
            }
            c if c.is_ascii_digit() => {
                let (number, next) = read_number(&chars, i)?;
                tokens.push(Token::Num(number));
                i = next;
            }
            c if c.is_alphabetic() || c == '_' || c == '$' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$') {
                    i += 1;
                }
                tokens.push(Token::Word(chars[start..i].iter().collect()));
            }
            other => return Err(format!("unexpected character {other:?} at position {i}")),
        }
    }
    Ok(tokens)
}

fn read_number(chars: &[char], start: usize) -> Result<(f64, usize), String> {
    let mut end = start;
    while end < chars.len() && (chars[end].is_ascii_digit() || chars[end] == '.') {
        end += 1;
    }
    let text: String = chars[start..end].iter().collect();
    text.parse().map(|n| (n, end)).map_err(|_| format!("invalid number {text:?}"))
}

struct Parser {
    tokens: Vec<Token>,
    position: usize,
}

impl Parser {
    fn new(text: &str) -> Result<Self, String> {
        Ok(Self { tokens: tokenize(text)?, position: 0 })
    }

    fn parse(mut self) -> Result<Expr, String> {
        if self.tokens.is_empty() {
            return Err("empty filter".into());
        }
        let expr = self.or()?;
        match self.peek() {
            None => Ok(expr),
            Some(token) => Err(format!("unexpected {token:?} after a complete expression")),
        }
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.position).cloned();
        self.position += 1;
        token
    }

    fn keyword(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word)) {
            self.position += 1;
            return true;
        }
        false
    }

    fn expect(&mut self, wanted: Token) -> Result<(), String> {
        match self.next() {
            Some(token) if token == wanted => Ok(()),
            other => Err(format!("expected {wanted:?}, found {other:?}")),
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.keyword("OR") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.not()?;
        while self.keyword("AND") {
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, String> {
        if self.keyword("NOT") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Expr, String> {
        if self.peek() == Some(&Token::LParen) {
            self.position += 1;
            let inner = self.or()?;
            self.expect(Token::RParen)?;
            return Ok(inner);
        }
        if self.keyword("EXISTS") {
            self.expect(Token::LParen)?;
            let ident = self.identifier()?;
            self.expect(Token::RParen)?;
            return Ok(Expr::Exists(ident));
        }
        let operand = Box::new(self.operand()?);
        if let Some(Token::Op(op)) = self.peek().cloned() {
            self.position += 1;
            return Ok(Expr::Compare(operand, op, Box::new(self.operand()?)));
        }
        if self.keyword("IS") {
            let negated = self.keyword("NOT");
            if !self.keyword("NULL") {
                return Err("expected NULL after IS".into());
            }
            return Ok(Expr::IsNull { operand, negated });
        }
        let negated = self.keyword("NOT");
        if self.keyword("IN") {
            self.expect(Token::LParen)?;
            let mut list = vec![self.literal()?];
            while self.peek() == Some(&Token::Comma) {
                self.position += 1;
                list.push(self.literal()?);
            }
            self.expect(Token::RParen)?;
            return Ok(Expr::In { operand, list, negated });
        }
        if self.keyword("LIKE") {
            let Some(Token::Str(pattern)) = self.next() else { return Err("LIKE needs a string pattern".into()) };
            let escape = if self.keyword("ESCAPE") {
                match self.next() {
                    Some(Token::Str(escape)) if escape.chars().count() == 1 => escape.chars().next(),
                    _ => return Err("ESCAPE needs a one-character string".into()),
                }
            } else {
                None
            };
            return Ok(Expr::Like { operand, pattern: pattern.chars().collect(), escape, negated });
        }
        if negated {
            return Err("expected IN or LIKE after NOT".into());
        }
        Ok(*operand)
    }

    fn operand(&mut self) -> Result<Expr, String> {
        match self.peek() {
            Some(Token::Word(word)) if is_literal_word(word) => Ok(Expr::Literal(self.literal()?)),
            Some(Token::Word(_) | Token::Quoted(_)) => Ok(Expr::Property(self.identifier()?)),
            _ => Ok(Expr::Literal(self.literal()?)),
        }
    }

    fn literal(&mut self) -> Result<Value, String> {
        match self.next() {
            Some(Token::Str(text)) => Ok(Value::Str(text)),
            Some(Token::Num(number)) => Ok(Value::Num(number)),
            Some(Token::Minus) => match self.next() {
                Some(Token::Num(number)) => Ok(Value::Num(-number)),
                other => Err(format!("expected a number after '-', found {other:?}")),
            },
            Some(Token::Word(word)) if word.eq_ignore_ascii_case("TRUE") => Ok(Value::Bool(true)),
            Some(Token::Word(word)) if word.eq_ignore_ascii_case("FALSE") => Ok(Value::Bool(false)),
            Some(Token::Word(word)) if word.eq_ignore_ascii_case("NULL") => Ok(Value::Null),
            other => Err(format!("expected a literal, found {other:?}")),
        }
    }

    /// `name`, `[name]`, `user.name`, `sys.Label`.
    fn identifier(&mut self) -> Result<Ident, String> {
        let first = match self.next() {
            Some(Token::Word(word)) if !is_keyword(&word) => (word, false),
            Some(Token::Quoted(name)) => (name, true),
            other => return Err(format!("expected a property name, found {other:?}")),
        };
        if self.peek() != Some(&Token::Dot) || first.1 {
            return Ok(Ident::User(first.0));
        }
        self.position += 1;
        let name = match self.next() {
            Some(Token::Word(word)) => word,
            Some(Token::Quoted(name)) => name,
            other => return Err(format!("expected a property name after '.', found {other:?}")),
        };
        match first.0.to_ascii_lowercase().as_str() {
            "sys" => SysProperty::from_name(&name)
                .map(Ident::Sys)
                .ok_or_else(|| format!("unknown system property sys.{name}")),
            "user" => Ok(Ident::User(name)),
            other => Err(format!("unknown property scope {other:?} (use sys. or user.)")),
        }
    }
}

fn is_literal_word(word: &str) -> bool {
    ["TRUE", "FALSE", "NULL"].iter().any(|k| word.eq_ignore_ascii_case(k))
}

fn is_keyword(word: &str) -> bool {
    ["AND", "OR", "NOT", "IN", "LIKE", "ESCAPE", "EXISTS", "IS", "NULL", "TRUE", "FALSE"]
        .iter()
        .any(|k| word.eq_ignore_ascii_case(k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(filter: &str, props: serde_json::Value) -> bool {
        let props: BTreeMap<String, serde_json::Value> = serde_json::from_value(props).unwrap();
        let expr = match Filter::sql(filter).unwrap_or_else(|e| panic!("{filter}: {e}")) {
            Filter::Sql(expr) => expr,
            Filter::Correlation(_) => unreachable!(),
        };
        expr.eval(&|ident| match ident {
            Ident::User(name) => property(&props, name).map(Value::from_json),
            Ident::Sys(SysProperty::Label) => Some(Value::Str("order-created".into())),
            Ident::Sys(_) => None,
        })
        .is_true()
    }

    #[test]
    fn constants_and_comparisons() {
        assert!(eval("1=1", json!({})));
        assert!(!eval("1=0", json!({})));
        assert!(eval("color = 'red'", json!({"color": "red"})));
        assert!(!eval("color = 'red'", json!({"color": "Red"})));
        assert!(eval("color <> 'red'", json!({"color": "blue"})));
        assert!(eval("qty > 2.5 AND qty <= 3", json!({"qty": 3})));
        assert!(eval("qty = -1", json!({"qty": -1})));
        assert!(eval("flag = TRUE", json!({"flag": true})));
        assert!(eval("sys.Label = 'order-created'", json!({})));
        assert!(eval("user.[my prop] = 'x' AND [my prop] = 'x'", json!({"my prop": "x"})));
        assert!(eval("Color = 'red'", json!({"color": "red"})), "property names ignore case");
    }

    #[test]
    fn missing_properties_are_unknown() {
        assert!(!eval("color = 'red'", json!({})));
        assert!(!eval("color <> 'red'", json!({})));
        assert!(!eval("NOT (color = 'red')", json!({})));
        assert!(eval("NOT (color = 'red') OR 1=1", json!({})));
        assert!(!eval("qty = '3'", json!({"qty": 3})), "different types never compare equal");
    }

    #[test]
    fn in_like_exists_is_null() {
        assert!(eval("region IN ('eu', 'us')", json!({"region": "us"})));
        assert!(eval("region NOT IN ('eu', 'us')", json!({"region": "apac"})));
        assert!(!eval("region NOT IN ('eu')", json!({})));
        assert!(eval("name LIKE 'ord%-_'", json!({"name": "order-1"})));
        assert!(!eval("name LIKE 'ord%-_'", json!({"name": "order-12"})));
        assert!(eval("name NOT LIKE 'x%'", json!({"name": "order"})));
        assert!(eval("name LIKE '100!%' ESCAPE '!'", json!({"name": "100%"})));
        assert!(!eval("name LIKE '100!%' ESCAPE '!'", json!({"name": "1000"})));
        assert!(eval("EXISTS(region) AND NOT EXISTS(other)", json!({"region": "eu"})));
        assert!(eval("other IS NULL AND region IS NOT NULL", json!({"region": "eu"})));
    }

    #[test]
    fn precedence_and_parentheses() {
        assert!(eval("1=0 AND 1=0 OR 1=1", json!({})));
        assert!(!eval("1=0 AND (1=0 OR 1=1)", json!({})));
        assert!(eval("NOT 1=0 AND 1=1", json!({})));
    }

    #[test]
    fn rejects_bad_filters() {
        for bad in ["", "color =", "color = 'red", "(1=1", "1=1)", "sys.Nope = 1", "a LIKE 3", "x NOT 3", "a = 1 b"] {
            assert!(Filter::sql(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn like_patterns() {
        let chars = |s: &str| s.chars().collect::<Vec<_>>();
        assert!(like(&chars(""), &chars("%"), None));
        assert!(like(&chars("abc"), &chars("a%c"), None));
        assert!(!like(&chars("ab"), &chars("a_c"), None));
    }
}
