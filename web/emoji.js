// Confab browser client: emoji shortcodes and the reaction picker's set (pure data).

/** The picker's groups: [name, [[shortcode, emoji], ...]]. */
export const EMOJI_GROUPS = [
  ["Smileys", [["smile", "😄"], ["grin", "😁"], ["joy", "😂"], ["rofl", "🤣"], ["slightly_smiling_face", "🙂"], ["wink", "😉"], ["blush", "😊"], ["heart_eyes", "😍"], ["star_struck", "🤩"], ["kissing_heart", "😘"], ["yum", "😋"], ["stuck_out_tongue", "😛"], ["thinking", "🤔"], ["neutral_face", "😐"], ["expressionless", "😑"], ["rolling_eyes", "🙄"], ["smirk", "😏"], ["relieved", "😌"], ["pensive", "😔"], ["sleepy", "😪"], ["sleeping", "😴"], ["mask", "😷"], ["nerd", "🤓"], ["sunglasses", "😎"], ["confused", "😕"], ["worried", "😟"], ["open_mouth", "😮"], ["astonished", "😲"], ["flushed", "😳"], ["pleading", "🥺"], ["cry", "😢"], ["sob", "😭"], ["scream", "😱"], ["angry", "😠"], ["rage", "😡"], ["exploding_head", "🤯"], ["partying_face", "🥳"], ["upside_down", "🙃"], ["hugs", "🤗"], ["shushing", "🤫"], ["zipper_mouth", "🤐"], ["sweat_smile", "😅"], ["innocent", "😇"], ["skull", "💀"], ["clown", "🤡"], ["ghost", "👻"], ["robot", "🤖"], ["poop", "💩"]]],
  ["Gestures", [["+1", "👍"], ["thumbsup", "👍"], ["-1", "👎"], ["thumbsdown", "👎"], ["ok_hand", "👌"], ["clap", "👏"], ["wave", "👋"], ["raised_hands", "🙌"], ["pray", "🙏"], ["muscle", "💪"], ["point_up", "☝️"], ["point_right", "👉"], ["v", "✌️"], ["crossed_fingers", "🤞"], ["handshake", "🤝"], ["eyes", "👀"], ["brain", "🧠"], ["facepalm", "🤦"], ["shrug", "🤷"], ["salute", "🫡"]]],
  ["Hearts", [["heart", "❤️"], ["orange_heart", "🧡"], ["yellow_heart", "💛"], ["green_heart", "💚"], ["blue_heart", "💙"], ["purple_heart", "💜"], ["black_heart", "🖤"], ["broken_heart", "💔"], ["sparkling_heart", "💖"], ["100", "💯"], ["fire", "🔥"], ["sparkles", "✨"], ["star", "⭐"], ["zap", "⚡"], ["boom", "💥"]]],
  ["Objects", [["tada", "🎉"], ["confetti_ball", "🎊"], ["gift", "🎁"], ["trophy", "🏆"], ["medal", "🏅"], ["rocket", "🚀"], ["bulb", "💡"], ["memo", "📝"], ["calendar", "📅"], ["pushpin", "📌"], ["paperclip", "📎"], ["lock", "🔒"], ["key", "🔑"], ["hammer", "🔨"], ["wrench", "🔧"], ["gear", "⚙️"], ["bug", "🐛"], ["package", "📦"], ["chart", "📈"], ["computer", "💻"], ["phone", "📱"], ["email", "📧"], ["bell", "🔔"], ["mag", "🔍"], ["hourglass", "⏳"], ["coffee", "☕"], ["beer", "🍺"], ["pizza", "🍕"], ["cake", "🍰"], ["balloon", "🎈"]]],
  ["Symbols", [["white_check_mark", "✅"], ["heavy_check_mark", "✔️"], ["x", "❌"], ["warning", "⚠️"], ["no_entry", "⛔"], ["question", "❓"], ["exclamation", "❗"], ["arrow_right", "➡️"], ["arrow_up", "⬆️"], ["recycle", "♻️"], ["red_circle", "🔴"], ["green_circle", "🟢"], ["large_blue_circle", "🔵"], ["checkered_flag", "🏁"], ["triangular_flag", "🚩"]]],
  ["Nature", [["sunny", "☀️"], ["cloud", "☁️"], ["rainbow", "🌈"], ["snowflake", "❄️"], ["ocean", "🌊"], ["seedling", "🌱"], ["evergreen_tree", "🌲"], ["cactus", "🌵"], ["sunflower", "🌻"], ["rose", "🌹"], ["dog", "🐶"], ["cat", "🐱"], ["fox", "🦊"], ["panda", "🐼"], ["unicorn", "🦄"], ["bee", "🐝"], ["turtle", "🐢"], ["octopus", "🐙"], ["crab", "🦀"], ["parrot", "🦜"]]],
];

/** Shortcode (without colons) → emoji. */
export const EMOJI = Object.freeze(Object.fromEntries(EMOJI_GROUPS.flatMap(([, items]) => items)));

/** The picker's emoji, each once, with its first shortcode, in picker order. */
export const PICKER = (() => {
  const seen = new Set();
  const out = [];
  for (const [group, items] of EMOJI_GROUPS) {
    for (const [name, e] of items) {
      if (seen.has(e)) continue;
      seen.add(e);
      out.push({ emoji: e, name, group });
    }
  }
  return out;
})();

/** Picker entries matching `q` (a shortcode fragment), in picker order. */
export function searchEmoji(q) {
  const t = String(q || "").trim().toLowerCase().replace(/^:|:$/g, "");
  if (!t) return PICKER;
  return PICKER.filter((p) => p.name.includes(t) || Object.entries(EMOJI).some(([k, v]) => v === p.emoji && k.includes(t)));
}

/** The quick reactions shown first when nothing was used yet. */
export const DEFAULT_RECENT = ["👍", "❤️", "😂", "🎉", "👀", "🙏"];
