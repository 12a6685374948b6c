import { afterEach, describe, expect, it, vi } from "vitest";
import { api, type CommandView } from "./api";
import { setStepUpHandler, submit, type SignedCommand } from "./commands";
import { ApiError } from "./errors";

const body = { message_id: "m1", device_id: "d", method: "memory_dump" } as unknown as SignedCommand;
const stepUp = () => new ApiError(401, 4003, "STEP_UP_REQUIRED", "memory_dump needs a second factor in the last 300 s");
const view = { command_id: "m1", state: "queued" } as CommandView;

afterEach(() => {
  vi.restoreAllMocks();
  setStepUpHandler(null);
});

describe("submit and step-up", () => {
  it("asks for a second factor on 4003 and sends the same body again", async () => {
    const send = vi.spyOn(api, "submitCommand").mockRejectedValueOnce(stepUp()).mockResolvedValueOnce(view);
    const asked: ApiError[] = [];
    setStepUpHandler(async (e) => (asked.push(e), true));
    await expect(submit(body)).resolves.toBe(view);
    expect(asked.map((e) => e.code)).toEqual([4003]);
    expect(send).toHaveBeenCalledTimes(2);
    expect(send.mock.calls[1]![0]).toBe(send.mock.calls[0]![0]);
  });

  it("gives up when the user does", async () => {
    const send = vi.spyOn(api, "submitCommand").mockRejectedValue(stepUp());
    setStepUpHandler(async () => false);
    await expect(submit(body)).rejects.toMatchObject({ code: 4003 });
    expect(send).toHaveBeenCalledTimes(1);
  });

  it("does not ask when told not to (a queue sending in the background), nor for other errors", async () => {
    const handler = vi.fn(async () => true);
    setStepUpHandler(handler);
    vi.spyOn(api, "submitCommand").mockRejectedValueOnce(stepUp());
    await expect(submit(body, { stepUp: false })).rejects.toMatchObject({ code: 4003 });
    vi.spyOn(api, "submitCommand").mockRejectedValueOnce(new ApiError(403, 4001, "POLICY_DENIED", "no"));
    await expect(submit(body)).rejects.toMatchObject({ code: 4001 });
    expect(handler).not.toHaveBeenCalled();
  });
});
