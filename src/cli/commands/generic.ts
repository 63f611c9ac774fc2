/**
 * `temper get|list|delete|cancel|resume <kind> [id]`, firectl style, for every kind in
 * api/kinds.ts. An id is the caller's account's; a full name (accounts/{a}/...) is taken as is.
 */
import type { Command } from 'commander';
import { findKind, KIND_WORDS } from '../api/kinds.js';
import { customMethod, deleteResource, getResource, itemPath, listAll } from '../api/resources.js';
import { printList, printResource } from '../output.js';
import { apiAction, withApiFlags } from './common.js';

const kinds = KIND_WORDS.join('|');

export function addGenericVerbs(program: Command): void {
  withApiFlags(program.command('get').argument('<kind>', kinds).argument('<id>', 'id or name'))
    .description('show one resource')
    .action(
      apiAction(async ({ api, output }, [kind, id]) => {
        printResource(await getResource(api, findKind(kind!), id!), output);
      }),
    );

  withApiFlags(program.command('list').argument('<kind>', kinds))
    .description("list an account's resources of a kind (every page)")
    .action(
      apiAction(async ({ api, output }, [word]) => {
        const kind = findKind(word!);
        printList(await listAll(api, kind.collection), kind.columns, output);
      }),
    );

  withApiFlags(program.command('delete').argument('<kind>', kinds).argument('<id>', 'id or name'))
    .description('delete a resource')
    .action(
      apiAction(async ({ api, output }, [word, id]) => {
        const kind = findKind(word!);
        await deleteResource(api, kind, id!);
        const name = itemPath(api, kind, id!).replace(/^\/v1\//, '');
        printResource({ name, deleted: true }, output);
      }),
    );

  for (const verb of ['cancel', 'resume'] as const)
    withApiFlags(program.command(verb).argument('<kind>', kinds).argument('<id>', 'id or name'))
      .description(
        verb === 'cancel'
          ? 'cancel a job (keeps its last checkpoint)'
          : 'resume a failed job from its last checkpoint',
      )
      .action(
        apiAction(async ({ api, output }, [word, id]) => {
          const kind = findKind(word!);
          if (!kind[verb]) throw new Error(`a ${kind.label} has no ${verb}: only jobs do`);
          printResource(await customMethod(api, kind, id!, verb), output);
        }),
      );
}
