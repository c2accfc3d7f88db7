/** The OpenAI-compatible server as a library: `createServer(lm, options).listen(port, host)`. */
export { createServer, defaultModelId, DEFAULT_MAX_BODY_BYTES, type ConnectionStats, type GrokServer, type ServerOptions } from './http.js';
export { Scheduler, SchedulerLane, DEFAULT_LIMITS, resolveLimits, type SchedulerLimits, type SchedulerStats, type SequenceSink, type Submission } from '../generate/scheduler.js';
export { DEFAULT_CHAT_TEMPLATE, loadChatTemplateFile, parseChatTemplate, type ServerChatTemplate } from './chat-template-file.js';
export { ListenError, RequestError, toErrorResponse, type ErrorResponse } from './errors.js';
