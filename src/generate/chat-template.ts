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
 */
export interface ChatMessage {
  readonly role: 'system' | 'user' | 'assistant';
  readonly content: string;
}

export type ChatTemplate = (messages: readonly ChatMessage[]) => string;

const ROLE_LABEL = { user: 'User', assistant: 'Assistant' } as const;

/** Stop strings that end an assistant turn under the default template. */
export const CHAT_STOP = ['\nUser:', '\nAssistant:'];

export const plainChatTemplate: ChatTemplate = (messages) => {
  let out = '';
  for (const m of messages) {
    if (m.role === 'system') out += `${m.content.trim()}\n\n`;
    else out += `${ROLE_LABEL[m.role]}: ${m.content.trim()}\n\n`;
  }
  return `${out}Assistant:`;
};

/** The text one new user turn appends to a transcript that already ends after an assistant reply. */
export function userTurnText(content: string, first: boolean): string {
  return `${first ? '' : '\n\n'}User: ${content.trim()}\n\nAssistant:`;
}
