// A trivial workflow for the Temporal integration test: one activity through proxyActivities.
// Workflow code runs in Temporal's deterministic sandbox, bundled by bundleWorkflowCode.
import { proxyActivities } from '@temporalio/workflow';

export interface HelloActivities {
  greet(name: string): Promise<string>;
}

const { greet } = proxyActivities<HelloActivities>({
  startToCloseTimeout: '10 seconds',
  retry: { maximumAttempts: 3 },
});

export async function hello(name: string): Promise<string> {
  const greeting = await greet(name);
  return `${greeting}!`;
}
