/** The shell structure of a line, by the broker's own parser (redaction must never change it). */
import { parseLine, type List } from "../../../src/broker/_lexer.ts";

/** Per pipeline, per element the word count (groups recursively), plus substitutions and flags. */
export function structure(cmd: string): unknown {
  const { list, out } = parseLine(cmd, { vars: {}, strict: false });
  const shape = (l: List): unknown => l.pipelines.map((p) => p.elements.map((e) => (e.group ? shape(e.group) : e.cmd.words.length)));
  return { shape: shape(list), subs: out.substitutions.map(shape), operators: out.operators, redirections: out.redirections };
}
