/**
 * Size caps for constraints, in one place, so a hostile or huge schema/grammar/regex fails
 * clearly (a ConstraintError naming the part) instead of exhausting memory or time.
 *
 * The automaton caps bound what compileGrammar builds. The count caps refuse a repetition bound
 * where it is written (a JSON Schema keyword, a regex or GBNF quantifier), before anything is
 * expanded: a counted repetition x{n} is unrolled into n copies of x (an automaton has to count
 * to n), so a bound the state caps cannot hold is refused by name rather than after the work.
 * An unbounded maximum (`x{n,}`, `*`, no maxLength) is a loop and costs nothing extra.
 */

/** States of one rule's nondeterministic automaton, counted before it is built. */
export const MAX_NFA_STATES = 1_000_000;
/** States of all the deterministic automata of a constraint together. */
export const MAX_DFA_STATES = 200_000;
/**
 * A regex or GBNF repetition count (`{n}`, `{n,m}`): each copy counted needs at least one
 * deterministic state (`a{199999}` fits), so a count above the state cap cannot be built.
 */
export const MAX_REPEAT = MAX_DFA_STATES;
/**
 * JSON Schema minLength / maxLength: one character of a JSON string (any code point as UTF-8, or
 * an escape) takes 27 deterministic states per position counted; 7000 × 27 = 189 000 fits the cap.
 */
export const MAX_STRING_LENGTH = 7_000;
/**
 * JSON Schema minItems / maxItems (and a tuple's length): one element counted takes at least 44
 * states (the comma, bounded whitespace on both sides, a value of one byte); 4000 × 44 = 176 000.
 */
export const MAX_ARRAY_ITEMS = 4_000;
