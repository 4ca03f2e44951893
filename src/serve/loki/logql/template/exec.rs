//! Running a parsed template over one line: Go's evaluation rules with
//! Loki's options (`missingkey=zero`: a missing label is `""`), and hard
//! bounds on work and output.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::funcs;
use super::parse::{Command, Node, Operand, Pipeline};
use super::value::Value;
use super::LabelSource;

/// The most evaluation steps one line may cost.
pub const MAX_STEPS: usize = 100_000;

pub enum Flow {
    Break,
    Continue,
    Error(String),
}

impl From<String> for Flow {
    fn from(e: String) -> Flow {
        Flow::Error(e)
    }
}

pub struct Exec<'a> {
    pub labels: &'a dyn LabelSource,
    pub line: &'a [u8],
    pub ts_ns: i64,
    pub out: &'a mut Vec<u8>,
    pub max_output: usize,
    pub steps: usize,
    vars: Vec<(String, Value)>,
    /// Where an error happened, for its message.
    pub at: usize,
}

/// The dot: the line's labels, or a value.
#[derive(Clone)]
pub enum Dot {
    Labels,
    Value(Value),
}

impl<'a> Exec<'a> {
    pub fn new(
        labels: &'a dyn LabelSource,
        line: &'a [u8],
        ts_ns: i64,
        out: &'a mut Vec<u8>,
        max_output: usize,
    ) -> Exec<'a> {
        Exec {
            labels,
            line,
            ts_ns,
            out,
            max_output,
            steps: 0,
            vars: vec![("$".into(), Value::Nil)],
            at: 0,
        }
    }

    fn step(&mut self) -> Result<(), Flow> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(Flow::Error(format!(
                "the template took more than {MAX_STEPS} steps for one line"
            )));
        }
        Ok(())
    }

    pub fn write(&mut self, text: &[u8]) -> Result<(), Flow> {
        if self.out.len() + text.len() > self.max_output {
            return Err(Flow::Error(format!(
                "the template's output exceeds {} bytes for one line",
                self.max_output
            )));
        }
        self.out.extend_from_slice(text);
        Ok(())
    }

    /// Checks that a value a function made is within the output bound.
    pub fn bounded(&self, v: Value) -> Result<Value, String> {
        let size = match &v {
            Value::Str(s) => s.len(),
            Value::List(l) => l.len() * 16,
            _ => 0,
        };
        if size > self.max_output {
            return Err(format!(
                "a value of {size} bytes exceeds the template's output bound of {} bytes",
                self.max_output
            ));
        }
        Ok(v)
    }

    pub fn labels_value(&self) -> Value {
        Value::Map(Arc::new(
            self.labels
                .all()
                .into_iter()
                .map(|(k, v)| (k, Value::Str(v)))
                .collect::<BTreeMap<_, _>>(),
        ))
    }

    fn dot_value(&self, dot: &Dot) -> Value {
        match dot {
            Dot::Labels => self.labels_value(),
            Dot::Value(v) => v.clone(),
        }
    }

    pub fn run(&mut self, nodes: &[Node], dot: &Dot) -> Result<(), Flow> {
        for n in nodes {
            self.step()?;
            match n {
                Node::Text(t) => self.write(t)?,
                Node::Action(p) => {
                    self.at = p.pos;
                    let v = self.pipeline(p, dot)?;
                    if p.decl.is_empty() {
                        let text = v.to_text_template();
                        self.write(text.as_bytes())?;
                    }
                }
                Node::If {
                    cond,
                    then,
                    otherwise,
                } => {
                    let mark = self.vars.len();
                    self.at = cond.pos;
                    let c = self.pipeline(cond, dot)?;
                    let r = if c.truthy() {
                        self.run(then, dot)
                    } else {
                        self.run(otherwise, dot)
                    };
                    self.vars.truncate(mark);
                    r?;
                }
                Node::With {
                    pipe,
                    body,
                    otherwise,
                } => {
                    let mark = self.vars.len();
                    self.at = pipe.pos;
                    let v = self.pipeline(pipe, dot)?;
                    let r = if v.truthy() {
                        self.run(body, &Dot::Value(v))
                    } else {
                        self.run(otherwise, dot)
                    };
                    self.vars.truncate(mark);
                    r?;
                }
                Node::Range {
                    pipe,
                    body,
                    otherwise,
                } => {
                    let mark = self.vars.len();
                    self.at = pipe.pos;
                    // The declared names are bound per element, not to
                    // the pipeline's value.
                    let mut p = pipe.clone();
                    let names = std::mem::take(&mut p.decl);
                    let v = self.pipeline(&p, dot)?;
                    let items: Vec<(Value, Value)> = match v {
                        Value::List(l) => l
                            .iter()
                            .enumerate()
                            .map(|(i, x)| (Value::Int(i as i64), x.clone()))
                            .collect(),
                        Value::Map(m) => m
                            .iter()
                            .map(|(k, x)| (Value::Str(k.clone()), x.clone()))
                            .collect(),
                        Value::Int(n) => {
                            if n > MAX_STEPS as i64 {
                                return Err(Flow::Error(format!(
                                    "range over {n}: more than {MAX_STEPS} steps"
                                )));
                            }
                            (0..n.max(0))
                                .map(|i| (Value::Int(i), Value::Int(i)))
                                .collect()
                        }
                        Value::Nil => Vec::new(),
                        other => {
                            return Err(Flow::Error(format!(
                                "range can't iterate over {}",
                                other.to_text()
                            )))
                        }
                    };
                    if items.is_empty() {
                        self.run(otherwise, dot)?;
                    }
                    for (k, x) in items {
                        self.step()?;
                        let inner = self.vars.len();
                        match names.len() {
                            1 => self.vars.push((names[0].clone(), x.clone())),
                            2 => {
                                self.vars.push((names[0].clone(), k));
                                self.vars.push((names[1].clone(), x.clone()));
                            }
                            _ => {}
                        }
                        let r = self.run(body, &Dot::Value(x));
                        self.vars.truncate(inner);
                        match r {
                            Ok(()) | Err(Flow::Continue) => {}
                            Err(Flow::Break) => break,
                            Err(e) => return Err(e),
                        }
                    }
                    self.vars.truncate(mark);
                }
                Node::Break => return Err(Flow::Break),
                Node::Continue => return Err(Flow::Continue),
            }
        }
        Ok(())
    }

    fn pipeline(&mut self, p: &Pipeline, dot: &Dot) -> Result<Value, Flow> {
        let mut piped: Option<Value> = None;
        for cmd in &p.cmds {
            self.step()?;
            piped = Some(self.command(cmd, dot, piped)?);
        }
        let v = piped.unwrap_or(Value::Nil);
        if !p.decl.is_empty() {
            let name = &p.decl[0];
            if p.assign {
                match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    Some(slot) => slot.1 = v.clone(),
                    None => return Err(Flow::Error(format!("undefined variable: ${name}"))),
                }
            } else {
                self.vars.push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn command(&mut self, cmd: &Command, dot: &Dot, piped: Option<Value>) -> Result<Value, Flow> {
        let (first, rest) = cmd.args.split_first().expect("commands have operands");
        if let Operand::Func(name) = first {
            if name == "and" || name == "or" {
                // Short-circuit, as Go does: the value of the deciding
                // operand.
                let mut last = Value::Nil;
                let n = rest.len() + piped.is_some() as usize;
                if n == 0 {
                    return Err(Flow::Error(format!(
                        "wrong number of args for {name}: want at least 1 got 0"
                    )));
                }
                for a in rest {
                    last = self.operand(a, dot)?;
                    if last.truthy() == (name == "or") {
                        return Ok(last);
                    }
                }
                if let Some(p) = piped {
                    last = p;
                }
                return Ok(last);
            }
            let mut args = Vec::with_capacity(rest.len() + 1);
            for a in rest {
                args.push(self.operand(a, dot)?);
            }
            args.extend(piped);
            let v = funcs::call(self, name, args)
                .map_err(|e| Flow::Error(format!("error calling {name}: {e}")))?;
            return Ok(self.bounded(v)?);
        }
        if !rest.is_empty() || piped.is_some() {
            return Err(Flow::Error("can't give argument to non-function".into()));
        }
        self.operand(first, dot)
    }

    fn operand(&mut self, a: &Operand, dot: &Dot) -> Result<Value, Flow> {
        self.step()?;
        match a {
            Operand::Literal(v) => Ok(v.clone()),
            Operand::Dot(fields) => {
                if fields.is_empty() {
                    return Ok(self.dot_value(dot));
                }
                let first = match dot {
                    Dot::Labels => Value::Str(self.labels.label(&fields[0]).unwrap_or_default()),
                    Dot::Value(v) => field(v, &fields[0])?,
                };
                fields[1..]
                    .iter()
                    .try_fold(first, |v, f| field(&v, f).map_err(Flow::Error))
            }
            Operand::Var(name, fields) => {
                let root = if name.is_empty() {
                    // `$`: the labels.
                    if fields.is_empty() {
                        return Ok(self.labels_value());
                    }
                    Value::Str(self.labels.label(&fields[0]).unwrap_or_default())
                } else {
                    let v = self
                        .vars
                        .iter()
                        .rev()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v.clone())
                        .ok_or_else(|| Flow::Error(format!("undefined variable: ${name}")))?;
                    if fields.is_empty() {
                        return Ok(v);
                    }
                    field(&v, &fields[0])?
                };
                fields[1..]
                    .iter()
                    .try_fold(root, |v, f| field(&v, f).map_err(Flow::Error))
            }
            Operand::Func(name) => {
                let v = funcs::call(self, name, Vec::new())
                    .map_err(|e| Flow::Error(format!("error calling {name}: {e}")))?;
                Ok(self.bounded(v)?)
            }
            Operand::Sub(p, fields) => {
                let mut sub = (**p).clone();
                sub.decl.clear();
                let v = self.pipeline(&sub, dot)?;
                fields
                    .iter()
                    .try_fold(v, |v, f| field(&v, f).map_err(Flow::Error))
            }
        }
    }
}

/// `.name` of a value: a map's entry (missing: `<no value>`, as Go's
/// `missingkey=zero` gives for an interface map).
fn field(v: &Value, name: &str) -> Result<Value, String> {
    match v {
        Value::Map(m) => Ok(m.get(name).cloned().unwrap_or(Value::Nil)),
        Value::Nil => Err(format!("nil pointer evaluating interface {{}}.{name}")),
        other => Err(format!(
            "can't evaluate field {name} in type {}",
            other.type_name()
        )),
    }
}

impl Value {
    /// How an action prints a value: `<no value>` for nothing.
    pub fn to_text_template(&self) -> String {
        match self {
            Value::Nil => "<no value>".into(),
            v => v.to_text(),
        }
    }
}
