// Users and roles: every account with its role, second factor and PCs. Admins change a
// role after confirming; the server refuses to demote the last admin (409), which the
// dialog explains. Auditors read.

import { useMemo, useState } from "preact/hooks";
import type { User } from "../api";
import { ApiError } from "../errors";
import { staffApi, type StaffUser } from "./api";
import { ActionError, Ago, ConfirmDialog, ReadOnlyNote, ScreenHead, useDirectory, useNow } from "./common";
import { ROLES, type Abilities, type Role } from "./logic";

const ROLE_ARTICLE: Record<Role, string> = { admin: "An admin", auditor: "An auditor", student: "A student" };

const ROLE_MEANING: Record<Role, string> = {
  admin: "manages the lab: every PC, roles, policy, approvals, the audit log",
  auditor: "reads every PC, alert and the audit log (with exports); changes nothing",
  student: "sees and controls only their own PCs",
};

export function UsersScreen({ can, me }: { can: Abilities; me: User }) {
  const dir = useDirectory();
  const now = useNow(60_000);
  const [search, setSearch] = useState("");
  const [chosen, setChosen] = useState<Record<string, Role>>({});
  const [pending, setPending] = useState<{ user: StaffUser; role: Role } | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState<string | null>(null);

  const users = useMemo(() => {
    const q = search.trim().toLowerCase();
    return [...dir.users.values()]
      .filter((u) => !q || u.email.toLowerCase().includes(q) || u.id.toLowerCase().includes(q) || u.role.includes(q))
      .sort((a, b) => a.email.localeCompare(b.email));
  }, [dir.users, search]);

  const admins = [...dir.users.values()].filter((u) => u.role === "admin").length;

  const confirm = async () => {
    if (!pending) return;
    setBusy(true);
    setError(null);
    try {
      await staffApi.setRole(pending.user.id, pending.role);
      setDone(`${pending.user.email} is now ${pending.role === "admin" ? "an admin" : pending.role === "auditor" ? "an auditor" : "a student"}.`);
      setChosen(({ [pending.user.id]: _, ...rest }) => rest);
      setPending(null);
      dir.reload();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  const lastAdmin = error instanceof ApiError && error.status === 409;

  return (
    <section>
      <ScreenHead title="Users and roles" sub={`${dir.users.size} accounts · ${admins} admin${admins === 1 ? "" : "s"}`}>
        <button onClick={() => dir.reload()}>Refresh</button>
      </ScreenHead>
      {!can.changeRoles && <ReadOnlyNote what="users and their roles" />}
      {done && (
        <p class="notice" role="status">
          {done}
        </p>
      )}
      <label class="inline-field">
        Search
        <input type="search" value={search} placeholder="email, id or role" onInput={(e) => setSearch(e.currentTarget.value)} />
      </label>
      <div class="table-wrap">
        <table class="data users">
          <thead>
            <tr>
              <th scope="col">User</th>
              <th scope="col">Role</th>
              <th scope="col">Second factor</th>
              <th scope="col">PCs</th>
              <th scope="col">Since</th>
              {can.changeRoles && <th scope="col">Change role</th>}
            </tr>
          </thead>
          <tbody>
            {users.map((u) => {
              const pick = chosen[u.id] ?? (u.role as Role);
              return (
                <tr key={u.id} data-user={u.email}>
                  <td>
                    <strong>{u.email}</strong>
                    {u.id === me.id && <span class="muted small"> (you)</span>}
                    <small class="block muted">
                      <code class="id">{u.id}</code>
                    </small>
                  </td>
                  <td>
                    <span class={"role-badge " + u.role}>{u.role}</span>
                  </td>
                  <td>{u.totp_enabled ? "TOTP" : <span class="muted">password only</span>}</td>
                  <td>{u.devices}</td>
                  <td>
                    <Ago at={u.created_at} now={now} />
                  </td>
                  {can.changeRoles && (
                    <td class="row-actions">
                      <label class="sr-only" for={"role-" + u.id}>
                        New role for {u.email}
                      </label>
                      <select
                        id={"role-" + u.id}
                        value={pick}
                        onChange={(e) => setChosen((c) => ({ ...c, [u.id]: e.currentTarget.value as Role }))}
                      >
                        {ROLES.map((r) => (
                          <option key={r} value={r}>
                            {r}
                          </option>
                        ))}
                      </select>
                      <button
                        disabled={pick === u.role}
                        onClick={() => {
                          setError(null);
                          setDone(null);
                          setPending({ user: u, role: pick });
                        }}
                      >
                        Change role
                      </button>
                    </td>
                  )}
                </tr>
              );
            })}
            {users.length === 0 && (
              <tr>
                <td colSpan={6} class="muted">
                  {dir.usersError ? "The user list could not be loaded." : "No user matches."}
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      <ConfirmDialog
        open={pending !== null}
        title="Change role?"
        confirmLabel={pending ? `Make ${pending.role}` : "Change"}
        danger={pending?.user.role === "admin"}
        busy={busy}
        onConfirm={() => void confirm()}
        onCancel={() => {
          setPending(null);
          setError(null);
        }}
      >
        {pending && (
          <>
            <p>
              <strong>{pending.user.email}</strong>: {pending.user.role} → <strong>{pending.role}</strong>
            </p>
            <p class="muted">
              {ROLE_ARTICLE[pending.role]} {ROLE_MEANING[pending.role]}.
            </p>
            {pending.user.id === me.id && pending.role !== "admin" && (
              <p class="warn">This is your own account: you lose admin rights as soon as you confirm.</p>
            )}
          </>
        )}
        <ActionError
          error={error}
          title={lastAdmin ? "The last admin cannot be demoted" : undefined}
          hint={lastAdmin ? "Make another user an admin first, then change this role." : undefined}
        />
      </ConfirmDialog>
    </section>
  );
}
