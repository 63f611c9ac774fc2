// Failure messages without Temporal's wrapping. Pure: the workflow bundle imports it too.

/** The innermost cause's message: what went wrong in the activity. */
export function innermostMessage(error: unknown): string {
  let e: unknown = error;
  while (e instanceof Error && e.cause instanceof Error) e = e.cause;
  return e instanceof Error ? e.message : String(e);
}
