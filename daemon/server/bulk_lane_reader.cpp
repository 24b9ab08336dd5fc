#include "bulk_lane_reader.hpp"

#include "app_protocol.hpp"
#include "cuda_wire.hpp"
#include "log.hpp"
#include "wire.hpp"

namespace rgpu {

namespace {
// How long a refused lane has to read our error before its socket is closed.
constexpr auto kRefusalLinger = std::chrono::seconds(2);
}  // namespace

std::shared_ptr<BulkLaneReader> BulkLaneReader::start(std::shared_ptr<EventLoop> loop, FrameLink::Handover connection,
                                                      std::string peer, std::shared_ptr<cuda::CudaSession> session,
                                                      ClosedFn on_closed) {
  auto reader = std::make_shared<BulkLaneReader>(loop, std::move(session), std::move(on_closed));
  auto handed = std::make_shared<FrameLink::Handover>(std::move(connection));
  loop->post([reader, handed, peer = std::move(peer)]() mutable { reader->begin(std::move(*handed), std::move(peer)); });
  return reader;
}

void BulkLaneReader::begin(FrameLink::Handover connection, std::string peer) {
  link_ = std::make_shared<FrameLink>(*loop_, std::move(connection.fd), std::move(peer));
  if (connection.ssl) link_->adopt_tls(std::move(connection.ssl));
  link_->prime(connection.unread);
  link_->set_bulk_sink(cuda::CudaSession::staging_sink(session_), cuda::kBulkFrameMinSize);
  std::weak_ptr<BulkLaneReader> weak = shared_from_this();
  answer_here_ = std::make_shared<const cuda::CudaSession::SendFn>(
      // The loop is kept: a session thread may answer after the server has stopped its lanes.
      [loop = loop_, link = std::weak_ptr<FrameLink>(link_)](std::vector<uint8_t> head, BulkPayload tail) {
        post_send(*loop, link, std::move(head), std::move(tail));
      });
  link_->start(FrameLink::Callbacks{
      .on_frame = [weak](Frame&& frame) { if (auto self = weak.lock()) self->on_frame(std::move(frame)); },
      .on_close =
          [weak](const std::string& reason) {
            if (auto self = weak.lock()) {
              self->session_.reset();
              if (auto closed = std::move(self->on_closed_)) closed(reason);
            }
          },
      .on_malformed =
          [weak](const FrameError& e) {
            if (auto self = weak.lock()) self->refuse(ErrorCode::MalformedFrame, std::string("malformed frame: ") + e.what());
          },
  });
}

void BulkLaneReader::close(const std::string& reason) {
  loop_->post([self = shared_from_this(), reason] {
    if (self->link_) self->link_->close(reason);
  });
}

void BulkLaneReader::on_frame(Frame&& frame) {
  if (frame.header.version != kProtocolVersion)
    return refuse(ErrorCode::MalformedFrame, "frame carries protocol version " + std::to_string(frame.header.version) +
                                                 " on a version " + std::to_string(kProtocolVersion) + " connection");
  // The client's keepalive: answered here, on the lane's loop, whatever the session's calls do.
  if (frame.header.type == static_cast<uint16_t>(MsgType::Ping))
    return link_->send(encode_frame(static_cast<uint16_t>(MsgType::Pong), frame.header.request_id, frame.payload, 0,
                                    Compression::Never));
  if (frame.header.type != cuda::kMsgCudaCall)
    return refuse(ErrorCode::UnexpectedMessage, std::string("a bulk lane carries CUDA calls and pings only, not ") +
                                                    msg_type_name(frame.header.type) + " (type " +
                                                    std::to_string(frame.header.type) + ")");
  if (session_) session_->submit(std::move(frame), answer_here_);
}

void BulkLaneReader::refuse(ErrorCode code, const std::string& message) {
  if (link_->closed()) return;
  LOG_WARN("refusing bulk lane %s: %s", link_->peer().c_str(), message.c_str());
  link_->send(encode_frame(static_cast<uint16_t>(MsgType::Error), 0, encode(ErrorMsg{code, message})));
  link_->finish_after_flush();
  loop_->after(kRefusalLinger, [weak = std::weak_ptr<FrameLink>(link_)](int) {
    if (auto link = weak.lock()) link->close("peer did not close after our error");
  });
}

}  // namespace rgpu
