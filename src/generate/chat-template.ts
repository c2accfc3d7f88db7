/**
 * Grok-1 is a base model: it has no chat format of its own. Chats are rendered as plain text in
 * a transcript a base model continues naturally, and generation stops when the model starts the
 * next user turn. Only the server takes a replacement (`serve --chat-template FILE`, or a
 * ServerChatTemplate in createServer's options); ChatSession (the library's chat and `grok-ts
 * chat`) always writes this transcript, turn by turn through userTurnText.
 *
 *   {system}\n\n            (only when there is a system message)
 *   User: {content}\n\n
 *   Assistant: {content}\n\n
 *   …
 *   Assistant:             (the open turn the model completes)
 *
 * Tool calls (the convention, also a base model's: it has none of its own). With tools, the system
 * part lists them, one JSON line each, under a sentence saying how to call one; a call is the tag
 * `<tool_call>` followed by one JSON object on the same line, `{"name": …, "arguments": {…}}`, as
 * the whole assistant turn; several calls in one turn are one such line each (CALL_SEPARATOR); a
 * tool's result is a turn of its own:
 *
 *   {system}\n\n
 *   Tools (to call one, reply <tool_call>{"name": …, "arguments": {…}}):\n
 *   {"name":"get_weather","description":"…","parameters":{…}}\n\n
 *   User: What is the weather in Paris?\n\n
 *   Assistant: <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}\n\n
 *   Tool result (get_weather): {"temperature": 21}\n\n
 *   Assistant:
 *
 * The tag is the one Hermes-style chat templates use, so a Jinja template of such a model works
 * with the same parser. Every part is replaceable through `ToolConvention`.
 */
export interface ToolCall {
  /** `call_…`, as OpenAI's ids. */
  readonly id: string;
  readonly name: string;
  /** The arguments as JSON text. */
  readonly arguments: string;
}

export interface ToolSpec {
  readonly name: string;
  readonly description?: string;
  /** A JSON Schema for the arguments object. */
  readonly parameters?: object;
}

export interface ChatMessage {
  readonly role: 'system' | 'user' | 'assistant';
  readonly content: string;
  /** An assistant turn's tool calls. */
  readonly toolCalls?: readonly ToolCall[];
}

/** A tool's result, fed back: the call it answers, and the tool's name (looked up from that call). */
export interface ToolResultMessage {
  readonly role: 'tool';
  readonly content: string;
  readonly toolCallId?: string;
  readonly name?: string;
}

export type ChatTurn = ChatMessage | ToolResultMessage;

export type ChatTemplate = (messages: readonly ChatTurn[], tools?: readonly ToolSpec[]) => string;

/** How tools, calls and results are written into a plain transcript, and how a call is recognised. */
export interface ToolConvention {
  /** What opens a call in the assistant's reply. */
  readonly callTag: string;
  /** The text added to the system part that lists the tools. */
  describeTools(tools: readonly ToolSpec[]): string;
  /** An assistant turn's calls, as the assistant would have written them. */
  renderCall(call: ToolCall): string;
  /** A tool turn. */
  renderResult(message: ToolResultMessage): string;
}

export const TOOL_CALL_TAG = '<tool_call>';
/** Between the calls of one turn (and after its text): each call on a line of its own. */
export const CALL_SEPARATOR = '\n';

/** JSON text without its whitespace (a call is one line in the transcript); text that is not JSON as it is. */
function compactJson(text: string): string {
  try {
    return JSON.stringify(JSON.parse(text));
  } catch {
    return text.trim() || '{}';
  }
}

export const DEFAULT_TOOL_CONVENTION: ToolConvention = {
  callTag: TOOL_CALL_TAG,
  describeTools: (tools) =>
    `Tools (to call one, reply ${TOOL_CALL_TAG}{"name": …, "arguments": {…}}):\n` +
    tools.map((t) => JSON.stringify({ name: t.name, ...(t.description ? { description: t.description } : {}), parameters: t.parameters ?? { type: 'object' } })).join('\n'),
  renderCall: (c) => `${TOOL_CALL_TAG}{"name": ${JSON.stringify(c.name)}, "arguments": ${compactJson(c.arguments)}}`,
  renderResult: (m) => `Tool result${m.name ? ` (${m.name})` : ''}: ${m.content.trim()}`,
};

const ROLE_LABEL = { user: 'User', assistant: 'Assistant' } as const;

/** Stop strings that end an assistant turn under the default template. */
export const CHAT_STOP = ['\nUser:', '\nAssistant:'];
/** With tools: the model must not write the tool's answer itself. */
export const TOOL_STOP = '\nTool result';

/** The assistant turn's text: its content, then each call on a line of its own. */
export function assistantText(m: ChatMessage, convention: ToolConvention = DEFAULT_TOOL_CONVENTION): string {
  const parts = [m.content.trim(), ...(m.toolCalls ?? []).map((c) => convention.renderCall(c))].filter((x) => x !== '');
  return parts.join(CALL_SEPARATOR);
}

/** The plain template with another tool convention. */
export function plainChatTemplateWith(convention: ToolConvention): ChatTemplate {
  return (messages, tools) => {
    let out = '';
    const toolText = tools && tools.length > 0 ? convention.describeTools(tools) : '';
    let toolsWritten = false;
    for (const m of messages) {
      if (m.role === 'system') {
        const text = m.content.trim();
        out += toolText && !toolsWritten ? `${text}\n\n${toolText}\n\n` : `${text}\n\n`;
        toolsWritten ||= toolText !== '';
      } else {
        if (toolText && !toolsWritten) {
          out += `${toolText}\n\n`;
          toolsWritten = true;
        }
        if (m.role === 'tool') out += `${convention.renderResult(m)}\n\n`;
        else if (m.role === 'assistant') out += `Assistant: ${assistantText(m, convention)}\n\n`;
        else out += `${ROLE_LABEL[m.role]}: ${m.content.trim()}\n\n`;
      }
    }
    if (toolText && !toolsWritten) out += `${toolText}\n\n`;
    return `${out}Assistant:`;
  };
}

export const plainChatTemplate: ChatTemplate = plainChatTemplateWith(DEFAULT_TOOL_CONVENTION);

/** The text one new user turn appends to a transcript that already ends after an assistant reply. */
export function userTurnText(content: string, first: boolean): string {
  return `${first ? '' : '\n\n'}User: ${content.trim()}\n\nAssistant:`;
}
