/**
 * Built-in rewards of the RL recipes, by name (a config file cannot hold a function): each
 * scores a completion's text against the row's expected answer, in [0, 1], 1 the optimum.
 */
export const REWARD_NAMES = ['exact_match', 'prefix_match', 'contains'] as const;
export type RewardName = (typeof REWARD_NAMES)[number];
export type RewardFn = (completion: string, expected: string) => number;

export const REWARDS: Readonly<Record<RewardName, RewardFn>> = {
  /** 1 when the trimmed completion is the answer. */
  exact_match: (c, e) => (c.trim() === e.trim() ? 1 : 0),
  /** The share of the answer's characters the completion starts with (dense; 1 = exact start). */
  prefix_match: (c, e) => {
    const want = e.trim();
    const got = c.trimStart();
    let k = 0;
    while (k < want.length && k < got.length && got[k] === want[k]) k++;
    return want.length === 0 ? 0 : k / want.length;
  },
  /** 1 when the answer appears anywhere in the completion. */
  contains: (c, e) => (c.includes(e.trim()) ? 1 : 0),
};
